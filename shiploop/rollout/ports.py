"""What the rollout controller needs from the rest of the system, as protocols.

`rollout` sits below nothing that runs things: the daemon (the composition
root) passes the control plane as `Deployments`, Envoy plus the apps' /metrics
as `ReadingSource`, and HTTP hooks as `Notifier`. Tests pass fakes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from shiploop.rollout.readings import Observation
from shiploop.spec import Alert, RolloutPolicy, ServiceSpec, Webhook
from shiploop.store import DeploymentRow, RolloutRow


class RolloutStore(Protocol):
    """Where the records live: the daemon's SQLite (store.Store), or a ConfigMap in a cluster (k8s/cluster_store.py)."""

    def transaction(self) -> AbstractContextManager[None]: ...

    def rollout(self, rollout_id: int) -> RolloutRow | None: ...

    def rollouts(self, service: str, limit: int = 20) -> list[RolloutRow]: ...

    def rollouts_in(self, states: Iterable[str]) -> list[RolloutRow]: ...

    def insert_rollout(self, service: str, candidate: str, baseline: str, state: str, data: str, now: float) -> int: ...

    def update_rollout(
        self, rollout_id: int, state: str, step: int, data: str, updated_at: float, outcome_reason: str | None
    ) -> None: ...

    def event(
        self,
        service: str | None,
        kind: str,
        message: str,
        evidence: dict[str, Any] | None = None,
        ts: float | None = None,
    ) -> None: ...


class Deployments(Protocol):
    """The deployment operations a rollout drives (the control plane's, in the daemon)."""

    def service(self, name: str) -> ServiceSpec:
        """The service's spec from the working tree; raises ShiploopError if there is no such service."""
        ...

    def deployments(self, service: str) -> Sequence[DeploymentRow]: ...

    def deployed_policy(self, service: str, version: str) -> RolloutPolicy:
        """The rollout policy in the version's own snapshot of service.yaml."""
        ...

    def sample_url(self, service: str) -> str | None:
        """A URL that reaches the service through the gateway, for hints (`shiploop load URL`)."""
        ...

    async def deploy(self, service: str, weight: int, track: str) -> dict[str, Any]: ...

    async def set_weights(self, service: str, requested: dict[str, int]) -> dict[str, int]: ...

    async def set_header_route(self, service: str, header: str, value: str, ref: str) -> dict[str, str]: ...

    async def remove_header_route(self, service: str, header: str, value: str | None) -> int: ...

    async def promote(self, service: str, reason: str) -> dict[str, Any]: ...

    async def rollback(self, service: str, reason: str) -> dict[str, Any]: ...


class ReadingSource(Protocol):
    async def read(
        self, service: str, candidate: str, baseline: str, policy: RolloutPolicy, fresh_after: float | None = None
    ) -> Observation:
        """Cumulative readings of candidate and baseline now; raises ReadingUnavailable when there are none.

        `fresh_after` (a step's first reading, just after its weights changed): counts taken after
        that moment, so a step never counts traffic of the weights before. A source that reads
        live counters (Envoy's) is always fresh; one that reads scraped ones may wait for a scrape.
        """
        ...


class Notifier(Protocol):
    async def webhooks(self, hooks: list[Webhook], when: str, payload: dict[str, Any]) -> str | None:
        """Call the hooks for `when`; the first failure's description, or None if all passed."""
        ...

    async def alerts(self, alerts: list[Alert], event: str, text: str, payload: dict[str, Any]) -> list[str]:
        """Send the alerts that want `event`; the failures."""
        ...
