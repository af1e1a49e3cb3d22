"""The rollout controller's `Deployments` in a cluster: weights written into the routing ConfigMap.

The same RolloutController that steers the local gateway steers the cluster's
through this adapter. `shiploop deploy --target kubernetes` placed the candidate
beside stable at weight 0 (k8s/cluster_routing.py); here a rollout moves the
weights, and its end drops the losing version from the router. Every change
is one optimistic update of the ConfigMap (k8s/configmaps.py: a 409 reads
again and re-applies the change); the gateway's agent follows the file.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from shiploop.errors import Conflict, Invalid
from shiploop.k8s.cluster_routing import ClusterRouting, parse, to_data
from shiploop.k8s.configmaps import ConfigMaps
from shiploop.k8s.manifests import ROUTING_CONFIGMAP
from shiploop.naming import Track
from shiploop.spec import RolloutPolicy, ServiceSpec
from shiploop.store import DeploymentRow

DEPLOY_HINT = "shiploop deploy --target kubernetes"


class ClusterDeployments:
    def __init__(self, configmaps: ConfigMaps, name: str = ROUTING_CONFIGMAP) -> None:
        self.configmaps = configmaps
        self.name = name

    def routing(self) -> ClusterRouting:
        return parse(self.configmaps.read(self.name), f"ConfigMap {self.configmaps.namespace}/{self.name}")

    def _change(self, change: Callable[[ClusterRouting], ClusterRouting]) -> ClusterRouting:
        where = f"ConfigMap {self.configmaps.namespace}/{self.name}"
        result: list[ClusterRouting] = []

        def apply(data: dict[str, str]) -> dict[str, str]:
            changed = change(parse(data, where))
            result[:] = [changed]
            return to_data(changed, data)

        self.configmaps.change(self.name, apply)
        return result[0]

    # -- what the controller reads ---------------------------------------------------------------

    def service(self, name: str) -> ServiceSpec:
        """The newest deployed version's service.yaml (the candidate's, when there is one)."""
        versions = self.routing().versions(name)
        newest = next((v for v in versions if v.track in (Track.CANARY, Track.SHADOW)), versions[0])
        return ServiceSpec.model_validate(newest.spec)

    def deployments(self, service: str) -> Sequence[DeploymentRow]:
        routing = self.routing()
        if service not in routing.services:
            return []
        return [DeploymentRow(service, v.version, v.track, v.weight, 1, v.spec, "running", 0.0)
                for v in routing.services[service]]  # fmt: skip

    def deployed_policy(self, service: str, version: str) -> RolloutPolicy:
        for v in self.routing().versions(service):
            if v.version == version:
                return ServiceSpec.model_validate(v.spec).rollout
        raise Invalid(f"{service}@{version} is not deployed in the cluster", hint=DEPLOY_HINT)

    def sample_url(self, service: str) -> str | None:
        return None  # the gateway's address outside the cluster is the cluster's business

    # -- what the controller changes -------------------------------------------------------------

    async def deploy(self, service: str, weight: int, track: str) -> dict[str, Any]:
        """In a cluster the candidate is already there (deploy placed it at 0%): take it as it is."""
        candidate = self.routing().one(service, Track.CANARY)
        if candidate is None:
            raise Conflict(f"{service} has no candidate deployed beside its stable version in the cluster",
                           hint=DEPLOY_HINT)  # fmt: skip
        if track != Track.CANARY:
            raise Invalid(f"{service}: only canary rollouts run in a cluster yet (strategy: canary)")
        return {"version": candidate.version, "track": candidate.track, "weight": candidate.weight}

    async def set_weights(self, service: str, requested: dict[str, int]) -> dict[str, int]:
        self._change(lambda r: r.with_weights(service, requested))
        return requested

    async def set_header_route(self, service: str, header: str, value: str, ref: str) -> dict[str, str]:
        raise Invalid(f"{service}: header routes (strategy: ab) are not steered in a cluster yet")

    async def remove_header_route(self, service: str, header: str, value: str | None) -> int:
        return 0

    async def promote(self, service: str, reason: str) -> dict[str, Any]:
        def change(r: ClusterRouting) -> ClusterRouting:
            candidate, stable = r.one(service, Track.CANARY), r.one(service, Track.STABLE)
            if candidate is None:
                return r  # already done (a retried write, or a restart that finishes it)
            r = r.with_weights(service, {candidate.version: 100})
            if stable is not None:
                r = r.without(service, stable.version)
            return r.with_track(service, candidate.version, Track.STABLE)

        routing = self._change(change)
        stable = routing.one(service, Track.STABLE)
        return {"stable": stable.version if stable else None, "reason": reason}

    async def rollback(self, service: str, reason: str) -> dict[str, Any]:
        def change(r: ClusterRouting) -> ClusterRouting:
            stable = r.one(service, Track.STABLE)
            for v in r.versions(service):
                if v.track in (Track.CANARY, Track.SHADOW):
                    r = r.without(service, v.version)
            return r.with_weights(service, {stable.version: 100}) if stable is not None else r

        routing = self._change(change)
        stable = routing.one(service, Track.STABLE)
        return {"stable": stable.version if stable else None, "reason": reason}
