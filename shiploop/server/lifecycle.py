"""Starting and stopping: a fresh start, re-adopting what a previous daemon left running,
shutdown, and `down` when no daemon answers."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from pathlib import Path

from shiploop.errors import ShiploopError
from shiploop.gateway.envoy import EnvoyProcess
from shiploop.naming import DeploymentState, Track
from shiploop.paths import ProjectPaths, lock_project
from shiploop.procs import is_running, terminate_group
from shiploop.server.context import PlaneContext
from shiploop.server.leftovers import unrecorded_processes
from shiploop.server.specs import run_config, spec_from_json, spec_to_json
from shiploop.spec import ServiceSpec, load_service
from shiploop.store import DeploymentRow, Store
from shiploop.versions.snapshot import content_id, list_files

Progress = Callable[[str], None]


class Lifecycle:
    def __init__(self, ctx: PlaneContext) -> None:
        self.ctx = ctx
        self.adopting = False  # this start took over processes a previous daemon left serving
        self.started_envoy = False  # this start launched an Envoy of its own

    async def start(self, progress: Progress = lambda _: None) -> None:
        envoy_json = self.ctx.store.get("envoy")
        if self.ctx.store.deployments() and envoy_json:
            self.adopting = True
            envoy = EnvoyProcess.from_json(envoy_json)
            try:
                await self._adopt(envoy, progress)
            except ShiploopError as e:
                e.hint = left_as_they_were(envoy.alive())
                raise
        else:
            await self._fresh_start(progress)

    async def start_failed(self) -> None:
        """Clean up after `start` raised: a fresh start stops what it started; a failed
        re-adoption leaves every process as it was (they serve, and the store records them)."""
        if not self.adopting:
            await self.shutdown()
            return
        ctx = self.ctx
        for task in list(ctx.background):
            task.cancel()
        if self.started_envoy:
            await ctx.gateway.stop()  # ours, not the one that was serving: it served nothing yet
        elif ctx.gateway.admin is not None:
            # Let go of the adopted Envoy without stopping it.
            await ctx.gateway.admin.close()
            ctx.gateway.admin = None
            ctx.gateway.process = None
        await ctx.runtime.close()

    async def _fresh_start(self, progress: Progress) -> None:
        ctx = self.ctx
        check_port_free(ctx.port)
        stable_ids: dict[str, str] = {}
        for name, spec in ctx.project.services.items():
            version_id, vspec = self._last_stable(name, spec, progress)
            stable_ids[name] = version_id
            ctx.store.upsert_deployment(
                DeploymentRow(
                    name,
                    version_id,
                    Track.STABLE,
                    100,
                    vspec.replicas,
                    spec_to_json(vspec),
                    DeploymentState.RUNNING,
                    ctx.clock(),
                )
            )
            ctx.runtime.start(name, version_id, run_config(vspec), vspec.replicas)
        for name in ctx.project.services:
            progress(f"waiting for {name} to be ready")
            stable = ctx.track(name, Track.STABLE)
            await ctx.runtime.wait_ready(name, stable.version, ctx.ready_timeout_s)
        progress("starting envoy")
        await ctx.gateway.start(ctx.routing_state())
        assert ctx.gateway.process is not None
        ctx.store.put("envoy", ctx.gateway.process.to_json())
        ctx.store.put("gateway_port", str(ctx.port))
        for name, version_id in stable_ids.items():
            ctx.record_stable(name, version_id)
        ctx.event(None, "up", f"gateway on {ctx.gateway_url}", {"services": list(ctx.project.services)})

    def _last_stable(self, name: str, spec: ServiceSpec, progress: Progress) -> tuple[str, ServiceSpec]:
        """The version `up` serves: the service's last stable (its snapshot), or the
        working tree for a service that has never had one."""
        ctx = self.ctx
        recorded = ctx.stable_record(name)
        path = next((Path(v["path"]) for v in ctx.store.versions(name) if v["id"] == recorded), None)
        if recorded is not None and path is not None and (path / "service.yaml").exists():
            try:
                vspec = load_service(path / "service.yaml", ctx.project.defaults)
            except ShiploopError as e:
                progress(f"{name}: stable {recorded} cannot be loaded ({e.line()}); using the working tree")
            else:
                working = content_id(spec.directory, list_files(spec.directory))
                if working != recorded:
                    message = (
                        f"{name}: working tree differs from stable {recorded}; ship it with: shiploop rollout {name}"
                    )
                    progress(message)
                    ctx.event(name, "working-tree-differs", message, {"stable": recorded, "working_tree": working})
                return recorded, vspec
        progress(f"building {name}")
        version, vspec = ctx.snapshot(spec)
        return version.id, vspec

    async def _adopt(self, envoy: EnvoyProcess, progress: Progress) -> None:
        ctx = self.ctx
        progress("adopting running services")
        for d in ctx.store.deployments():
            if d.track == Track.STABLE and ctx.stable_record(d.service) is None:
                ctx.record_stable(d.service, d.version)  # a store from before stable records
        configs = {(d.service, d.version): run_config(spec_from_json(d.spec)) for d in ctx.store.deployments()}
        adopted = ctx.runtime.adopt(configs)
        # Replicas that were already serving are taken as ready at once, so the
        # republished routes keep every endpoint Envoy has now.
        await ctx.runtime.tick()
        if await ctx.gateway.adopt(envoy, ctx.routing_state()):
            ctx.event(None, "adopted", f"re-adopted envoy pid {envoy.pid} and {len(adopted)} replicas")
            return
        progress("starting envoy")
        check_port_free(ctx.port)
        self.started_envoy = True
        await ctx.gateway.start(ctx.routing_state())
        assert ctx.gateway.process is not None
        ctx.store.put("envoy", ctx.gateway.process.to_json())
        ctx.event(None, "adopted", f"re-adopted {len(adopted)} replicas; envoy was gone and was started again")

    async def shutdown(self) -> None:
        """Stop every replica and Envoy, and forget them; versions stay on disk."""
        ctx = self.ctx
        for task in list(ctx.background):
            task.cancel()
        await ctx.runtime.stop_all()
        await ctx.gateway.stop()
        await ctx.runtime.close()
        with ctx.store.transaction():
            for d in ctx.store.deployments():
                ctx.store.remove_deployment(d.service, d.version)
            ctx.store.delete("envoy")
        ctx.event(None, "down", "all services and the gateway stopped")


def left_as_they_were(envoy_serving: bool) -> str:
    """The hint of a failed re-adoption: what still runs, and what to do."""
    gateway = "envoy keeps serving the last routes" if envoy_serving else "envoy is not running, so nothing is served"
    return f"the replicas that were running are left as they were and {gateway}; fix the cause, then: shiploop up"


def check_port_free(port: int) -> None:
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
    """`down` when no daemon answers (it crashed): end what the store says is running.

    Takes the project's lock first, so it never races a daemon that is starting."""
    paths = ProjectPaths(root)
    if not paths.db.exists():
        return 0
    lock = lock_project(paths)
    store = Store(paths.db)
    stopped = 0
    try:
        for r in store.replicas():
            if r.pid and r.start_time and is_running(r.pid, r.start_time):
                terminate_group(r.pid)
                stopped += 1
        # A Prometheus `up --prometheus` started (telemetry.wiring records it as {pid, start_time, port}).
        prometheus = json.loads(store.get("prometheus") or "{}")
        if prometheus and is_running(prometheus["pid"], prometheus["start_time"]):
            terminate_group(prometheus["pid"])
            stopped += 1
        envoy_json = store.get("envoy")
        if envoy_json:
            envoy = EnvoyProcess.from_json(envoy_json)
            if envoy.alive():
                envoy.stop()
                stopped += 1
        # Then those whose records were lost (killed before the row was written, or a disk that refused it).
        for pid in unrecorded_processes(paths, set()):
            terminate_group(pid)
            stopped += 1
        with store.transaction():
            for d in store.deployments():
                store.remove_deployment(d.service, d.version)
            for i in store.intercepts():  # personal routes die with the gateway
                store.remove_intercept(i.id)
            store.delete("envoy")
            store.delete("prometheus")
        store.event(None, "down", f"stopped {stopped} processes left by a daemon that was not running")
    finally:
        store.close()
        os.close(lock)
    return stopped
