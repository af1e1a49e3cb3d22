"""Starting and stopping: a fresh start, re-adopting what a previous daemon left running,
shutdown, and `down` when no daemon answers."""

from __future__ import annotations

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
from shiploop.server.mutations import READY_TIMEOUT_S
from shiploop.server.specs import run_config, spec_from_json, spec_to_json
from shiploop.store import DeploymentRow, Store

Progress = Callable[[str], None]


class Lifecycle:
    def __init__(self, ctx: PlaneContext) -> None:
        self.ctx = ctx

    async def start(self, progress: Progress = lambda _: None) -> None:
        envoy_json = self.ctx.store.get("envoy")
        if self.ctx.store.deployments() and envoy_json:
            await self._adopt(EnvoyProcess.from_json(envoy_json), progress)
        else:
            await self._fresh_start(progress)

    async def _fresh_start(self, progress: Progress) -> None:
        ctx = self.ctx
        check_port_free(ctx.port)
        for name, spec in ctx.project.services.items():
            progress(f"building {name}")
            version, vspec = ctx.snapshot(spec)
            ctx.store.upsert_deployment(
                DeploymentRow(
                    name,
                    version.id,
                    Track.STABLE,
                    100,
                    vspec.replicas,
                    spec_to_json(vspec),
                    DeploymentState.RUNNING,
                    ctx.clock(),
                )
            )
            ctx.runtime.start(name, version.id, run_config(vspec), vspec.replicas)
        for name in ctx.project.services:
            progress(f"waiting for {name} to be ready")
            stable = ctx.track(name, Track.STABLE)
            await ctx.runtime.wait_ready(name, stable.version, READY_TIMEOUT_S)
        progress("starting envoy")
        await ctx.gateway.start(ctx.routing_state())
        assert ctx.gateway.process is not None
        ctx.store.put("envoy", ctx.gateway.process.to_json())
        ctx.store.put("gateway_port", str(ctx.port))
        ctx.event(None, "up", f"gateway on {ctx.gateway_url}", {"services": list(ctx.project.services)})

    async def _adopt(self, envoy: EnvoyProcess, progress: Progress) -> None:
        ctx = self.ctx
        progress("adopting running services")
        configs = {(d.service, d.version): run_config(spec_from_json(d.spec)) for d in ctx.store.deployments()}
        adopted = ctx.runtime.adopt(configs)
        # Replicas that were already serving are taken as ready at once, so the
        # republished routes keep every endpoint Envoy has now.
        await ctx.runtime.tick()
        if await ctx.gateway.adopt(envoy, ctx.routing_state()):
            ctx.event(None, "adopted", f"re-adopted envoy pid {envoy.pid} and {len(adopted)} replicas")
            return
        progress("starting envoy")
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
            store.delete("envoy")
        store.event(None, "down", f"stopped {stopped} processes left by a daemon that was not running")
    finally:
        store.close()
        os.close(lock)
    return stopped
