"""What every job of the control plane shares: its parts, its lock and clock, and the lookups they all need.

The jobs (lifecycle, mutations, views, supervision) each take this context;
none of them builds a part of its own, so tests and the daemon decide what runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from shiploop.errors import NotFound, ShiploopError
from shiploop.gateway.gateway import Gateway
from shiploop.gateway.model import RoutingState
from shiploop.naming import Track
from shiploop.paths import ProjectPaths
from shiploop.runtime.local import LocalRuntime
from shiploop.server.desired import Change
from shiploop.server.routing import (
    ExperimentRouting,
    HeaderRoute,
    PersonalRoute,
    Placement,
    ServiceRouting,
    build_routing_state,
)
from shiploop.server.specs import spec_from_json
from shiploop.spec import ProjectSpec, ServiceSpec, load_project, load_service
from shiploop.store import DeploymentRow, ExperimentRow, Store
from shiploop.versions import Version, snapshot


@dataclass
class PlaneContext:
    paths: ProjectPaths
    project: ProjectSpec
    store: Store
    runtime: LocalRuntime
    gateway: Gateway
    port: int  # the gateway's listener
    clock: Callable[[], float]  # wall clock for every record and decision
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one mutation of desired state at a time
    background: set[asyncio.Task[None]] = field(default_factory=set)
    ready_timeout_s: float = 30.0  # how long a new version may take to be healthy (tests shorten it)
    listen_address: str = "127.0.0.1"  # where Envoy listens: a shared host's --listen address (and loopback)

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def event(self, service: str | None, kind: str, message: str, evidence: dict[str, Any] | None = None) -> None:
        self.store.event(service, kind, message, evidence, ts=self.clock())

    # -- the project and its versions --------------------------------------------------------

    def service(self, name: str) -> ServiceSpec:
        # Re-read the project: the user edits code and service.yaml between commands.
        self.project = load_project(self.paths.root)
        if name not in self.project.services:
            known = ", ".join(self.project.services) or "none"
            raise NotFound(f"unknown service '{name}'", hint=f"services in this project: {known}")
        return self.project.services[name]

    def require_service(self, name: str) -> None:
        """NotFound unless `name` is a service. A deployed one is checked in the store
        alone: a half-edited service.yaml must not block a rollback or a weight change."""
        if not self.store.deployments(name):
            self.service(name)

    def snapshot(self, spec: ServiceSpec) -> tuple[Version, ServiceSpec]:
        version = snapshot(spec.name, spec.directory, self.paths.versions)
        self.store.add_version(spec.name, version.id, version.path)
        return version, load_service(version.path / "service.yaml", self.project.defaults)

    # -- deployments ---------------------------------------------------------------------------

    def find_track(self, service: str, track: Track) -> DeploymentRow | None:
        return next((d for d in self.store.deployments(service) if d.track == track), None)

    def track(self, service: str, track: Track) -> DeploymentRow:
        found = self.find_track(service, track)
        if found is not None:
            return found
        raise NotFound(
            f"{service} has no {track} version",
            hint=f"see: shiploop status; deploy one with: shiploop deploy {service}",
        )

    def resolve(self, service: str, ref: str) -> DeploymentRow:
        """A deployed version by id, unique prefix, `service@id`, or track name."""
        ref = ref.split("@", 1)[1] if "@" in ref else ref
        deployed = self.store.deployments(service)
        by_track = [d for d in deployed if d.track == ref]
        if by_track:
            return by_track[0]
        matches = [d for d in deployed if d.version.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        ids = ", ".join(d.version for d in deployed) or "none"
        if not matches:
            raise NotFound(f"{service} has no deployed version matching '{ref}'", hint=f"deployed: {ids}")
        raise ShiploopError(
            f"'{ref}' matches several versions of {service}", hint=f"use more characters of one of: {ids}"
        )

    def deployed_services(self, view: Change | None = None) -> list[tuple[str, list[DeploymentRow], ServiceSpec]]:
        """Per service (sorted): its deployments, and the spec whose routes apply (the stable version's).

        From the store, or from `view`: the state a pending change would leave."""
        by_service: dict[str, list[DeploymentRow]] = {}
        for d in (view or self.store).deployments():
            by_service.setdefault(d.service, []).append(d)
        out = []
        for name, rows in sorted(by_service.items()):
            stable = next((d for d in rows if d.track == Track.STABLE), rows[0])
            out.append((name, rows, spec_from_json(stable.spec)))
        return out

    # -- desired state -> gateway ------------------------------------------------------------

    def routing_state(self, view: Change | None = None) -> RoutingState:
        source = view or self.store
        services = []
        for name, rows, spec in self.deployed_services(view):
            services.append(
                ServiceRouting(
                    spec,
                    tuple(Placement(d.version, d.track, d.weight) for d in rows),
                    tuple(HeaderRoute(h, v, ver) for h, v, ver in source.header_routes(name)),
                    experiment_routing(source.running_experiment(name)),
                    tuple(
                        PersonalRoute(i.id, i.header, i.value, i.host, i.port, i.kind) for i in source.intercepts(name)
                    ),
                )
            )
        state = build_routing_state(services, self.runtime.endpoints, self.port, str(self.experiment_log))
        return replace(state, listen_address=self.listen_address)

    @property
    def experiment_log(self) -> Path:
        """Where Envoy logs every request of a running experiment (gateway/assignment.py)."""
        return self.paths.logs / "experiments.jsonl"

    async def publish(self) -> int:
        """Publish what the store holds (the supervisor's republish after readiness changes)."""
        result = await self.gateway.publish(self.routing_state())
        return result.generation

    def change(self) -> Change:
        """Start a change of desired state; make it with `commit`. Call under the lock."""
        return Change(self.store)

    async def commit(self, change: Change) -> int:
        """Publish the state `change` leads to and, once Envoy serves it, write it to the store.

        Envoy rejecting it (GatewayRejected) or not confirming it (GatewayTimeout)
        leaves the store as it was; the publisher points its files back at the last
        accepted generation. Call under the lock."""
        result = await self.gateway.publish(self.routing_state(change))
        change.write_to(self.store)
        return result.generation

    # -- each service's last stable version: survives `down`, so `up` restores it -------------

    def stable_record(self, service: str) -> str | None:
        return self.store.get(stable_key(service))

    def record_stable(self, service: str, version: str, change: Change | None = None) -> None:
        if change is not None:
            change.put(stable_key(service), version)
        else:
            self.store.put(stable_key(service), version)

    def in_background(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)


def experiment_routing(row: ExperimentRow | None) -> ExperimentRouting | None:
    if row is None:
        return None
    unit = row.spec["unit"]
    kind = "cookie" if unit.get("cookie") else "header"
    return ExperimentRouting(row.salt, kind, unit[kind], float(row.spec["allocation"]), row.control, row.treatment)


def stable_key(service: str) -> str:
    return f"stable/{service}"
