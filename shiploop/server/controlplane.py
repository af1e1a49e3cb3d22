"""The control plane: deployments, tracks and weights, and keeping Envoy in step.

It owns the store, the local runtime and the gateway. Every mutation runs under
one lock, writes the store first, then publishes, and returns only after Envoy
has accepted the new routes.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from shiploop.errors import ShiploopError
from shiploop.gateway.envoy import EnvoyProcess
from shiploop.gateway.gateway import Gateway
from shiploop.gateway.model import RoutingState
from shiploop.naming import Track, cluster_name
from shiploop.paths import state_dir_of
from shiploop.runtime.local import LocalRuntime, RunConfig
from shiploop.server.routing import HeaderRoute, Placement, ServiceRouting, build_routing_state
from shiploop.spec import ProjectSpec, ServiceSpec, load_project, load_service
from shiploop.store import DeploymentRow, Store
from shiploop.versions import Version, snapshot

STABLE, CANARY, SHADOW = Track.STABLE, Track.CANARY, Track.SHADOW
READY_TIMEOUT_S = 30.0
DRAIN_TIMEOUT_S = 10.0


def run_config(spec: ServiceSpec) -> RunConfig:
    return RunConfig(spec.run.command, dict(spec.run.env), spec.directory, spec.health.path, spec.health.timeout)


def spec_to_json(spec: ServiceSpec) -> dict[str, Any]:
    return dict(json.loads(spec.model_dump_json()))


def spec_from_json(data: dict[str, Any]) -> ServiceSpec:
    return ServiceSpec.model_validate_json(json.dumps(data))


class ControlPlane:
    def __init__(self, root: Path, gateway_port: int | None = None) -> None:
        self.root = root.resolve()
        self.project: ProjectSpec = load_project(self.root)
        self.state_dir = state_dir_of(self.root)
        self.store = Store(self.state_dir / "state.db")
        # A restarted daemon keeps the port the running Envoy already listens on.
        adopted_port = self.store.get("gateway_port") if self.store.get("envoy") else None
        self.port = gateway_port or (int(adopted_port) if adopted_port else self.project.gateway.port)
        self.runtime = LocalRuntime(self.state_dir, self.store, self.event)
        self.gateway = Gateway(self.state_dir, node_id=f"shiploop-{self.project.name}")
        self.lock = asyncio.Lock()
        self.background: set[asyncio.Task[None]] = set()
        self.started_at = time.time()
        # Hooks for layers above (the rollout controller) to run each supervision tick.
        self.tick_hooks: list[Callable[[], Awaitable[None]]] = []

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def event(self, service: str | None, kind: str, message: str, evidence: dict[str, Any] | None = None) -> None:
        self.store.event(service, kind, message, evidence)

    # -- start-up ---------------------------------------------------------------------

    async def start(self, progress: Callable[[str], None] = lambda _: None) -> None:
        envoy_json = self.store.get("envoy")
        if self.store.deployments() and envoy_json:
            await self._adopt(EnvoyProcess.from_json(envoy_json), progress)
        else:
            await self._fresh_start(progress)

    async def _fresh_start(self, progress: Callable[[str], None]) -> None:
        _check_port_free(self.port)
        for name, spec in self.project.services.items():
            progress(f"building {name}")
            version, vspec = self._snapshot(spec)
            self.store.upsert_deployment(
                DeploymentRow(
                    name, version.id, STABLE, 100, vspec.replicas, spec_to_json(vspec), "running", time.time()
                )
            )
            self.runtime.start(name, version.id, run_config(vspec), vspec.replicas)
        for name in self.project.services:
            progress(f"waiting for {name} to be ready")
            stable = self._track(name, STABLE)
            await self.runtime.wait_ready(name, stable.version, READY_TIMEOUT_S)
        progress("starting envoy")
        await self.gateway.start(self.routing_state(), self.project.gateway.admin_port)
        assert self.gateway.process is not None
        self.store.put("envoy", self.gateway.process.to_json())
        self.store.put("gateway_port", str(self.port))
        self.event(None, "up", f"gateway on {self.gateway_url}", {"services": list(self.project.services)})

    async def _adopt(self, envoy: EnvoyProcess, progress: Callable[[str], None]) -> None:
        progress("adopting running services")
        configs = {(d.service, d.version): run_config(spec_from_json(d.spec)) for d in self.store.deployments()}
        adopted = self.runtime.adopt(configs)
        # Replicas that were already serving are taken as ready at once, so the
        # republished routes keep every endpoint Envoy has now.
        await self.runtime.tick()
        if await self.gateway.adopt(envoy, self.routing_state()):
            self.event(None, "adopted", f"re-adopted envoy pid {envoy.pid} and {len(adopted)} replicas")
            return
        progress("starting envoy")
        await self.gateway.start(self.routing_state(), envoy.admin_port)
        assert self.gateway.process is not None
        self.store.put("envoy", self.gateway.process.to_json())
        self.event(None, "adopted", f"re-adopted {len(adopted)} replicas; envoy was gone and was started again")

    # -- desired state -> gateway -----------------------------------------------------------

    def _deployed_services(self) -> list[tuple[str, list[DeploymentRow], ServiceSpec]]:
        """Per service (sorted): its deployments, and the spec whose routes apply (the stable version's)."""
        by_service: dict[str, list[DeploymentRow]] = {}
        for d in self.store.deployments():
            by_service.setdefault(d.service, []).append(d)
        out = []
        for name, rows in sorted(by_service.items()):
            stable = next((d for d in rows if d.track == STABLE), rows[0])
            out.append((name, rows, spec_from_json(stable.spec)))
        return out

    def routing_state(self) -> RoutingState:
        services = []
        for name, rows, spec in self._deployed_services():
            services.append(
                ServiceRouting(
                    spec,
                    tuple(Placement(d.version, d.track, d.weight) for d in rows),
                    tuple(HeaderRoute(h, v, ver) for h, v, ver in self.store.header_routes(name)),
                )
            )
        return build_routing_state(services, self.runtime.endpoints, self.port)

    async def publish(self) -> int:
        result = await self.gateway.publish(self.routing_state())
        return result.generation

    # -- helpers ------------------------------------------------------------------------------

    def service(self, name: str) -> ServiceSpec:
        # Re-read the project: the user edits code and service.yaml between commands.
        self.project = load_project(self.root)
        if name not in self.project.services:
            known = ", ".join(self.project.services) or "none"
            raise ShiploopError(f"unknown service '{name}'", hint=f"services in this project: {known}")
        return self.project.services[name]

    def _snapshot(self, spec: ServiceSpec) -> tuple[Version, ServiceSpec]:
        version = snapshot(spec.name, spec.directory, self.state_dir / "versions")
        self.store.add_version(spec.name, version.id, version.path)
        return version, load_service(version.path / "service.yaml", self.project.defaults)

    def _track(self, service: str, track: str) -> DeploymentRow:
        found = self._find_track(service, track)
        if found is not None:
            return found
        raise ShiploopError(
            f"{service} has no {track} version",
            hint=f"see: shiploop status; deploy one with: shiploop deploy {service}",
        )

    def _find_track(self, service: str, track: str) -> DeploymentRow | None:
        return next((d for d in self.store.deployments(service) if d.track == track), None)

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
            raise ShiploopError(f"{service} has no deployed version matching '{ref}'", hint=f"deployed: {ids}")
        raise ShiploopError(
            f"'{ref}' matches several versions of {service}", hint=f"use more characters of one of: {ids}"
        )

    # -- commands ---------------------------------------------------------------------------

    async def deploy(self, service: str, weight: int = 0, track: str = CANARY) -> dict[str, Any]:
        if not 0 <= weight <= 100:
            raise ShiploopError(f"weight {weight} is out of range", hint="give a percentage from 0 to 100")
        spec = self.service(service)
        async with self.lock:
            stable = self._track(service, STABLE)
            version, vspec = self._snapshot(spec)
            if version.id == stable.version:
                raise ShiploopError(
                    f"{service}@{version.id} is already stable: nothing changed",
                    hint="change the service's code or service.yaml, then deploy",
                )
            previous = self._find_track(service, track)
            if previous is not None and previous.version != version.id:
                await self._retire(previous, "replaced by a newer " + track)
            if previous is None or previous.version != version.id:
                self.store.upsert_deployment(
                    DeploymentRow(
                        service, version.id, track, 0, vspec.replicas, spec_to_json(vspec), "running", time.time()
                    )
                )
                self.runtime.start(service, version.id, run_config(vspec), vspec.replicas)
            try:
                await self.runtime.wait_ready(service, version.id, READY_TIMEOUT_S)
            except ShiploopError:
                await self.runtime.stop(service, version.id)
                self.store.remove_deployment(service, version.id)
                raise
            if track != SHADOW:
                self.store.set_weights(service, {stable.version: 100 - weight, version.id: weight})
            gen = await self.publish()
            self.event(
                service,
                "deployed",
                f"{service}@{version.id} as {track} at {weight}%",
                {"version": version.id, "track": track, "weight": weight, "generation": gen},
            )
            return {
                "service": service,
                "version": version.id,
                "track": track,
                "weight": weight,
                "created": version.created,
            }

    async def set_weights(self, service: str, requested: dict[str, int]) -> dict[str, int]:
        self.service(service)
        async with self.lock:
            deployed = [d for d in self.store.deployments(service) if d.track != SHADOW]
            weights: dict[str, int] = {}
            for ref, w in requested.items():
                if not 0 <= w <= 100:
                    raise ShiploopError(
                        f"weight {ref}={w} is out of range", hint="weights are percentages from 0 to 100"
                    )
                weights[self.resolve(service, ref).version] = w
            total = sum(weights.values())
            rest = [d.version for d in deployed if d.version not in weights]
            if total > 100:
                raise ShiploopError(f"weights add up to {total}, over 100", hint="give weights that add up to 100")
            if len(rest) == 1:
                weights[rest[0]] = 100 - total
            elif total != 100:
                raise ShiploopError(
                    f"weights add up to {total}, not 100",
                    hint=f"give a weight for each of: {', '.join(rest)}" if rest else "give weights that add up to 100",
                )
            else:
                weights.update({v: 0 for v in rest})
            self.store.set_weights(service, weights)
            gen = await self.publish()
            self.event(
                service,
                "weights",
                ", ".join(f"{v}={w}" for v, w in weights.items()),
                {"weights": weights, "generation": gen},
            )
            return weights

    async def set_header_route(self, service: str, header: str, value: str, ref: str) -> dict[str, str]:
        self.service(service)
        async with self.lock:
            target = self.resolve(service, ref)
            self.store.set_header_route(service, header, value, target.version)
            await self.publish()
            self.event(service, "header-route", f"{header}: {value} -> {target.version}")
            return {"header": header.lower(), "value": value, "version": target.version}

    async def remove_header_route(self, service: str, header: str, value: str | None) -> int:
        self.service(service)
        async with self.lock:
            removed = self.store.remove_header_route(service, header, value)
            if removed == 0:
                raise ShiploopError(
                    f"{service} has no header route on '{header}'", hint="see the header routes with: shiploop status"
                )
            await self.publish()
            self.event(service, "header-route-removed", f"{header}{': ' + value if value else ''}")
            return removed

    async def promote(self, service: str, reason: str = "manual promote") -> dict[str, Any]:
        """The canary (or the shadow of a dark launch) becomes stable; the old stable drains and stops."""
        self.service(service)
        async with self.lock:
            candidate = self._find_track(service, CANARY) or self._find_track(service, SHADOW)
            if candidate is None:
                raise ShiploopError(
                    f"{service} has no canary to promote", hint=f"deploy one: shiploop deploy {service}"
                )
            stable = self._track(service, STABLE)
            with self.store.transaction():
                self.store.set_track(service, candidate.version, STABLE, 100)
                self.store.set_track(service, stable.version, "retiring", 0, state="draining")
            gen = await self.publish()
            self.event(
                service,
                "promoted",
                f"{service}@{candidate.version} is stable ({reason})",
                {"version": candidate.version, "previous": stable.version, "generation": gen},
            )
        self._in_background(self._drain_and_stop(service, stable.version))
        return {"service": service, "stable": candidate.version, "retired": stable.version}

    async def rollback(self, service: str, reason: str = "manual rollback") -> dict[str, Any]:
        self.service(service)
        async with self.lock:
            stable = self._track(service, STABLE)
            others = [d for d in self.store.deployments(service) if d.track in (CANARY, SHADOW)]
            if not others:
                raise ShiploopError(f"{service} has no canary to roll back", hint="see: shiploop status")
            # All traffic to stable at once; stable has stayed fully scaled.
            with self.store.transaction():
                self.store.set_weights(service, {stable.version: 100})
                for d in others:
                    self.store.set_track(service, d.version, "retiring", 0, state="draining")
            gen = await self.publish()
            self.event(
                service,
                "rolled-back",
                f"all traffic to {service}@{stable.version} ({reason})",
                {"stable": stable.version, "stopped": [d.version for d in others], "generation": gen},
            )
        for d in others:
            self._in_background(self._drain_and_stop(service, d.version))
        return {"service": service, "stable": stable.version, "stopped": [d.version for d in others]}

    async def _retire(self, d: DeploymentRow, why: str) -> None:
        self.store.set_track(d.service, d.version, "retiring", 0, state="draining")
        await self.publish()
        self.event(d.service, "retired", f"{d.service}@{d.version} {why}")
        self._in_background(self._drain_and_stop(d.service, d.version))

    async def _drain_and_stop(self, service: str, version: str) -> None:
        """Wait until Envoy has no request in flight to the version, then stop it."""
        admin = self.gateway.admin
        stat = f"cluster.{cluster_name(service, version)}.upstream_rq_active"
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while admin is not None and time.monotonic() < deadline:
            active = (await admin.stats(f"^{stat}$".replace(".", r"\."))).get(stat, 0)
            if active == 0:
                break
            await asyncio.sleep(0.1)
        await self.runtime.stop(service, version)
        async with self.lock:
            self.store.remove_deployment(service, version)
            await self.publish()

    def _in_background(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    # -- reading ----------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        services = []
        for name, rows, spec in self._deployed_services():
            versions = []
            for d in rows:
                ready, total = self.runtime.counts(name, d.version)
                versions.append(
                    {
                        "id": d.version,
                        "track": d.track,
                        "weight": d.weight,
                        "ready": ready,
                        "replicas": total,
                        "state": d.state,
                    }
                )
            header_routes = [{"header": h, "value": v, "version": ver} for h, v, ver in self.store.header_routes(name)]
            routes = [r.describe() for r in spec.routes]
            services.append({"name": name, "versions": versions, "header_routes": header_routes, "routes": routes})
        return {
            "project": self.project.name,
            "gateway": self.gateway_url,
            "services": services,
            "generation": self.gateway.publisher.generation,
        }

    def versions(self, service: str) -> list[dict[str, Any]]:
        self.service(service)
        deployed = {d.version: d for d in self.store.deployments(service)}
        out = []
        for v in self.store.versions(service):
            d = deployed.get(v["id"])
            out.append(
                {
                    "id": v["id"],
                    "created_at": v["created_at"],
                    "track": d.track if d else None,
                    "weight": d.weight if d else None,
                }
            )
        return out

    def log_files(self, service: str, ref: str | None) -> list[str]:
        self.service(service)
        version = self.resolve(service, ref).version if ref else None
        return [
            str(r.log_path)
            for r in self.runtime.replicas
            if r.service == service and (version is None or r.version == version)
        ]

    # -- loops and shutdown ------------------------------------------------------------------------

    async def supervise(self, interval_s: float = 0.5) -> None:
        last_publish = time.monotonic()
        while True:
            try:
                changed = await self.runtime.tick()
                prune = self.gateway.publisher.needs_prune and time.monotonic() - last_publish > DRAIN_TIMEOUT_S
                if changed or prune:
                    async with self.lock:
                        await self.publish()
                    last_publish = time.monotonic()
                for hook in self.tick_hooks:
                    await hook()
            except ShiploopError as e:
                self.event(None, "error", e.line())
            except Exception as e:  # a bug: keep supervising, but leave the traceback in the daemon log
                traceback.print_exc()
                self.event(None, "error", f"internal error in the supervisor: {e!r}")
            await asyncio.sleep(interval_s)

    async def shutdown(self) -> None:
        """Stop every replica and Envoy, and forget them; versions stay on disk."""
        for task in list(self.background):
            task.cancel()
        await self.runtime.stop_all()
        await self.gateway.stop()
        await self.runtime.close()
        with self.store.transaction():
            for d in self.store.deployments():
                self.store.remove_deployment(d.service, d.version)
            self.store.delete("envoy")
        self.event(None, "down", "all services and the gateway stopped")


def _check_port_free(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            raise ShiploopError(
                f"gateway port {port} is in use",
                where="shiploop.yaml gateway.port",
                hint="stop what uses it, set gateway.port, or pass --port",
            ) from None


def teardown_without_daemon(root: Path) -> int:
    """`down` when no daemon answers (it crashed): end what the store says is running."""
    from shiploop.procs import is_running, terminate_group

    db = state_dir_of(root) / "state.db"
    if not db.exists():
        return 0
    store = Store(db)
    stopped = 0
    try:
        for r in store.replicas():
            if r.pid and r.start_time and is_running(r.pid, r.start_time):
                terminate_group(r.pid)
                stopped += 1
        envoy_json = store.get("envoy")
        if envoy_json:
            envoy = EnvoyProcess.from_json(envoy_json)
            if envoy.alive():
                envoy.stop()
                stopped += 1
        with store.transaction():
            for d in store.deployments():
                store.remove_deployment(d.service, d.version)
            store.delete("envoy")
        store.event(None, "down", f"stopped {stopped} processes left by a daemon that was not running")
    finally:
        store.close()
    return stopped
