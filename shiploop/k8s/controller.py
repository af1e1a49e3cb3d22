"""`shiploop controller`: the rollout controller in a cluster, the same one the daemon runs.

Composition only: the RolloutController (rollout/controller.py: the pure judge
and its thin loop) with
- its records in the ConfigMap `shiploop-rollouts` (k8s/cluster_store.py),
- its deployments in the routing ConfigMap the gateway's agent follows
  (k8s/cluster_deployments.py),
- its readings from Prometheus (rollout/prometheus_readings.py), or any ReadingSource,
- leadership through the Lease `shiploop-controller` (k8s/lease.py).

Only the leader acts. Each step renews (or tries to take) the Lease first; a
follower does nothing else. A candidate that takes the Lease, first or after
the previous holder stopped renewing it, starts a fresh RolloutController
(nothing of another leader's memory) and resumes from the records in the
cluster: a rollout in progress continues at its step with its evidence, one
caught between its decision and its traffic move is finished. A candidate
deploy placed at weight 0 beside stable starts a rollout by itself (as
Flagger or Argo Rollouts start on a new revision), once per candidate.

Each action is short (a read of Prometheus, a ConfigMap update) against the
Lease's 15 s; the longest, a step's first reading, waits for a scrape (at
most two scrape intervals and a second).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from shiploop.errors import ShiploopError, Unavailable
from shiploop.k8s.cluster_deployments import ClusterDeployments
from shiploop.k8s.cluster_store import ClusterRolloutStore
from shiploop.k8s.configmaps import ConfigMaps
from shiploop.k8s.lease import LeaseLeader
from shiploop.k8s.manifests import CONTROLLER
from shiploop.k8s.ticking import every
from shiploop.naming import Track
from shiploop.rollout.controller import RolloutController
from shiploop.rollout.ports import Notifier, ReadingSource
from shiploop.rollout.readings import ReadingUnavailable

log = logging.getLogger("shiploop.controller")
LEASE_S = 15


class ClusterController:
    def __init__(
        self,
        client: Any,
        namespace: str,
        identity: str,
        readings: ReadingSource,
        *,
        lease_s: int = LEASE_S,
        auto_start: bool = True,
        notifier: Notifier | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.identity = identity
        self.readings = readings
        self.auto_start = auto_start
        self.notifier = notifier
        self.clock = clock
        self.sleep = sleep
        self.configmaps = ConfigMaps(client, namespace)
        self.store = ClusterRolloutStore(self.configmaps)
        self.deployments = ClusterDeployments(self.configmaps)
        self.leader = LeaseLeader(client, namespace, CONTROLLER, identity, lease_s, clock)
        self.rollouts = self._fresh_controller()
        self.leading = False
        self._resumed = False  # this term's leader has finished what the records say was left half done
        self._said: set[str] = set()  # waiting lines logged once
        self.error: str | None = None  # the last step's failure, for /healthz; None once a step succeeds
        self.steps = 0

    def _fresh_controller(self) -> RolloutController:
        return RolloutController(self.store, self.deployments, self.readings, self.notifier, self.clock, self.sleep)

    async def step(self) -> None:
        """Renew or take the Lease; the leader then starts new candidates' rollouts and judges the running ones."""
        from httpx2 import TransportError

        self.steps += 1
        try:
            leads = self.leader.try_lead()
        except ShiploopError as e:
            self._failed(e)
            leads = False
        except TransportError as e:  # the API server unreachable: lead no more (the Lease lapses elsewhere too)
            self._failed(Unavailable(f"cannot reach the API server for the Lease {self.namespace}/{CONTROLLER}: {e}"))
            leads = False
        if leads != self.leading:
            log.info("%s %s the Lease %s/%s", self.identity, "took" if leads else "lost", self.namespace, CONTROLLER)
        if not leads:
            self.leading = False
            return
        if not self.leading:
            # Taking over: nothing of another leader's memory, everything from the cluster's records.
            self.rollouts = self._fresh_controller()
            self.leading, self._resumed = True, False
        try:
            if not self._resumed:
                await self.rollouts.resume_after_restart()
                self._resumed = True
            if self.auto_start:
                await self._start_candidates()
            await self.rollouts.tick()
            self.error = None
        except ShiploopError as e:
            self._failed(e)

    def _waiting(self, line: str) -> None:
        if line not in self._said:
            self._said.add(line)
            log.info("%s", line)

    def _failed(self, e: ShiploopError) -> None:
        if self.error != e.line():
            log.error("%s", e.line())
        self.error = e.line()

    async def _start_candidates(self) -> None:
        routing = self.deployments.routing()
        for service, versions in sorted(routing.services.items()):
            candidate = next((v for v in versions if v.track == Track.CANARY), None)
            if candidate is None or not any(v.track == Track.STABLE for v in versions):
                continue
            latest = self.rollouts.latest(service)
            if latest is not None and (latest.active or latest.candidate == candidate.version):
                continue  # running, or this candidate had its rollout already
            stable = next(v for v in versions if v.track == Track.STABLE)
            policy = self.deployments.deployed_policy(service, candidate.version)
            try:
                # Not before both versions can be read: a start that cannot take its first reading fails.
                await self.readings.read(service, candidate.version, stable.version, policy)
            except ReadingUnavailable as e:
                self._waiting(f"{service}@{candidate.version} waits for its metrics to start its rollout: {e}")
                continue
            log.info("starting the rollout of %s@%s", service, candidate.version)
            try:
                await self.rollouts.start(service)
            except ShiploopError as e:
                await self.rollouts.fail_unstarted(service, f"the rollout could not start: {e.line()}")
                raise

    def replicas(self, deployment: str) -> tuple[int, int]:
        """(ready, desired) replicas of a Deployment; (0, 0) when it cannot be read."""
        from httpx2 import TransportError
        from lightkube import ApiError
        from lightkube.resources.apps_v1 import Deployment

        try:
            d = self.client.get(Deployment, deployment, namespace=self.namespace)
        except (ApiError, TransportError):
            return 0, 0
        st = d.status
        return (st.readyReplicas or 0, (d.spec.replicas if d.spec else None) or 0) if st else (0, 0)

    def require_leader(self) -> None:
        """For the API's writes: only the leader changes anything."""
        if not self.leading:
            raise Unavailable(
                f"this controller ({self.identity}) does not hold the Lease {self.namespace}/{CONTROLLER}",
                hint=f"kubectl -n {self.namespace} get lease {CONTROLLER} -o jsonpath='{{.spec.holderIdentity}}'",
            )

    async def run(self, stop: asyncio.Event, interval_s: float = 1.0) -> None:
        await every(interval_s, self.step, stop)
