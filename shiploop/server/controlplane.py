"""The control plane: one object the daemon wires up, made of jobs that share one context.

- lifecycle: start (fresh or re-adopting), shutdown
- mutations: deploy, weights, personal routes, promote, rollback
- views: status, versions, log files
- supervisor: the loop that keeps replicas and Envoy in step

Each job lives in its own module and takes the shared PlaneContext; this class
only builds the parts and forwards to the jobs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shiploop.gateway.gateway import Gateway
from shiploop.gateway.model import RoutingState
from shiploop.naming import Track
from shiploop.paths import ProjectPaths
from shiploop.procs import claim_port, free_port
from shiploop.runtime.local import LocalRuntime
from shiploop.server.context import PlaneContext
from shiploop.server.intercepts import Intercepts
from shiploop.server.lifecycle import Lifecycle, Progress, teardown_without_daemon
from shiploop.server.mutations import Mutations
from shiploop.server.supervisor import Supervisor, TickHook
from shiploop.server.views import Views
from shiploop.spec import ProjectSpec, ServiceSpec, load_project
from shiploop.store import DeploymentRow, Store

__all__ = ["ControlPlane", "teardown_without_daemon"]


class ControlPlane:
    def __init__(
        self,
        root: Path,
        gateway_port: int | None = None,
        clock: Callable[[], float] = time.time,
        listen_address: str = "127.0.0.1",
    ) -> None:
        paths = ProjectPaths(root.resolve())
        project = load_project(paths.root)
        store = Store(paths.db)
        # A restarted daemon keeps the port the running Envoy already listens on.
        adopted_port = store.get("gateway_port") if store.get("envoy") else None
        port = gateway_port or (int(adopted_port) if adopted_port else project.gateway.port)
        claim_port(port)  # bound once Envoy starts: not to be picked for a replica meanwhile
        runtime = LocalRuntime(paths.state_dir, store, lambda *a: self.ctx.event(*a))
        # Envoy's stats listener for Prometheus: a free port (an adopted Envoy keeps its own, from its record).
        gateway = Gateway(paths.state_dir, node_id=f"shiploop-{project.name}", stats_port=free_port())
        self.ctx = PlaneContext(paths, project, store, runtime, gateway, port, clock, listen_address=listen_address)
        self.lifecycle = Lifecycle(self.ctx)
        self.mutations = Mutations(self.ctx)
        self.intercepts = Intercepts(self.ctx)
        self.views = Views(self.ctx, self.intercepts.view)
        self.supervisor = Supervisor(self.ctx)
        self.supervisor.tick_hooks.append(self.intercepts.sweep)  # lapsed leases out within a tick
        self.started_at = clock()

    # -- the parts, for the layers above -------------------------------------------------------

    @property
    def root(self) -> Path:
        return self.ctx.paths.root

    @property
    def state_dir(self) -> Path:
        return self.ctx.paths.state_dir

    @property
    def project(self) -> ProjectSpec:
        return self.ctx.project

    @property
    def store(self) -> Store:
        return self.ctx.store

    @property
    def runtime(self) -> LocalRuntime:
        return self.ctx.runtime

    @property
    def gateway(self) -> Gateway:
        return self.ctx.gateway

    @property
    def port(self) -> int:
        return self.ctx.port

    @property
    def gateway_url(self) -> str:
        return self.ctx.gateway_url

    @property
    def tick_hooks(self) -> list[TickHook]:
        return self.supervisor.tick_hooks

    def event(self, service: str | None, kind: str, message: str, evidence: dict[str, Any] | None = None) -> None:
        self.ctx.event(service, kind, message, evidence)

    def service(self, name: str) -> ServiceSpec:
        return self.ctx.service(name)

    def resolve(self, service: str, ref: str) -> DeploymentRow:
        return self.ctx.resolve(service, ref)

    def routing_state(self) -> RoutingState:
        return self.ctx.routing_state()

    async def publish(self) -> int:
        return await self.ctx.publish()

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self, progress: Progress = lambda _: None) -> None:
        self.intercepts.sweep_stored()  # leases that lapsed while no daemon ran are never published
        await self.lifecycle.start(progress)

    async def shutdown(self) -> None:
        await self.lifecycle.shutdown()
        self.intercepts.forget_all()

    async def start_failed(self) -> None:
        await self.lifecycle.start_failed()

    async def supervise(self, interval_s: float = 0.5) -> None:
        await self.supervisor.run(interval_s)

    # -- mutations -------------------------------------------------------------------------------

    async def deploy(self, service: str, weight: int = 0, track: str = Track.CANARY) -> dict[str, Any]:
        return await self.mutations.deploy(service, weight, Track(track))

    async def set_weights(self, service: str, requested: dict[str, int]) -> dict[str, int]:
        return await self.mutations.set_weights(service, requested)

    async def set_header_route(self, service: str, header: str, value: str, ref: str) -> dict[str, str]:
        return await self.mutations.set_header_route(service, header, value, ref)

    async def remove_header_route(self, service: str, header: str, value: str | None) -> int:
        return await self.mutations.remove_header_route(service, header, value)

    async def promote(self, service: str, reason: str = "manual promote") -> dict[str, Any]:
        return await self.mutations.promote(service, reason)

    async def rollback(self, service: str, reason: str = "manual rollback") -> dict[str, Any]:
        return await self.mutations.rollback(service, reason)

    # -- views ------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return self.views.status()

    def versions(self, service: str) -> list[dict[str, Any]]:
        return self.views.versions(service)

    def log_files(self, service: str, ref: str | None) -> list[str]:
        return self.views.log_files(service, ref)
