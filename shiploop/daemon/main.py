"""The control-plane daemon process: `python -m shiploop.daemon ROOT [--port N]`.

It writes .shiploop/daemon.json once it serves, so the CLI can find it, and
removes it when it exits. Stopping the daemon (down) stops everything; a crash
of the daemon stops nothing, and the next daemon adopts what runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import ssl
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import uvicorn

from shiploop.daemon.app import create_app
from shiploop.daemon.dashboard import Dashboard
from shiploop.daemon.experiments_api import mount_experiments
from shiploop.daemon.hostcheck import HostCheck
from shiploop.daemon.remote import Listen, RemoteGate, Tokens, certificate, mount_remote, parse_listen, server_context
from shiploop.daemon.rollouts import check_metrics_source, rollout_controller
from shiploop.errors import ShiploopError
from shiploop.experiments.controller import ExperimentController
from shiploop.logsetup import log_to_stderr
from shiploop.paths import PRIVATE_UMASK, ProjectPaths, lock_project, running_daemon, secure_state_dir
from shiploop.procs import free_port, process_start_time
from shiploop.server.controlplane import ControlPlane
from shiploop.server.observe import Observer
from shiploop.server.tunnel import TunnelServer
from shiploop.telemetry.endpoint import mount_metrics
from shiploop.telemetry.gather import StateReader
from shiploop.telemetry.publish_targets import TargetPublisher
from shiploop.telemetry.wiring import PrometheusWiring


def read_token(state_dir: Path) -> str:
    path = state_dir / "token"
    if not path.exists():
        state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


async def serve(
    root: Path, gateway_port: int | None, announce: bool, prometheus: bool = False, listen: str | None = None
) -> int:
    paths = ProjectPaths(root)
    where = parse_listen(listen) if listen else None
    # Held until this process ends, however it ends: a second daemon stops here,
    # before it touches the store, the replicas or Envoy.
    lock_project(paths)
    if running_daemon(root):
        raise ShiploopError("a shiploop daemon already runs for this project", hint="see: shiploop status")
    secure_state_dir(paths)
    cp = ControlPlane(root, gateway_port, listen_address=where.bind if where else "127.0.0.1")
    cert_key = certificate(paths, cp.project.remote, where) if where else None
    tls = server_context(*cert_key) if cert_key else None
    prometheus_bin = PrometheusWiring.check(prometheus or cp.project.prometheus)  # missing: fail before starting
    check_metrics_source(cp.project.metrics, prometheus_started=prometheus_bin is not None)
    token = read_token(cp.state_dir)
    stop = asyncio.Event()

    async def shutdown() -> None:
        stop.set()

    def progress(msg: str) -> None:
        if announce:
            print(f"... {msg}", flush=True)

    prom: PrometheusWiring | None = None
    rollouts, readings = rollout_controller(cp, lambda: prom.url if prom is not None else None)
    try:
        await cp.start(progress)
        await rollouts.resume_after_restart()
    except BaseException:
        await cp.start_failed()  # a failed re-adoption leaves serving processes as they were
        raise
    observer = Observer(cp)
    experiments = ExperimentController(cp, clock=cp.ctx.clock, readings=readings)
    dashboard = Dashboard(cp, rollouts, observer, token, experiments)
    cp.tick_hooks.extend([observer.tick, rollouts.tick, dashboard.trail.tick, experiments.tick])
    api_port = free_port()
    app = create_app(cp, rollouts, observer, token, shutdown)
    mount_experiments(app, cp, experiments, observer)
    mount_metrics(app, StateReader(cp))
    dashboard.mount(app)
    server = uvicorn.Server(
        uvicorn.Config(
            HostCheck(app, api_port),
            host="127.0.0.1",
            port=api_port,
            log_level="warning",
            lifespan="off",
        )
    )
    tokens = Tokens(cp.store, token, cp.ctx.clock)
    tunnels = TunnelServer(cp.intercepts, tokens.verify) if where else None
    app.state.tunnels = tunnels
    mount_remote(app, tokens, where.tunnel_port if where else None, cp.port, _drop_user(tunnels))
    server_task = asyncio.create_task(server.serve())
    supervisor = asyncio.create_task(cp.supervise())
    while not server.started:
        if server_task.done():
            raise ShiploopError(f"the API could not listen on 127.0.0.1:{api_port}")
        await asyncio.sleep(0.02)
    remote_task: asyncio.Task[None] | None = None
    remote: dict[str, Any] | None = None
    if where is not None and tunnels is not None and tls is not None and cert_key is not None:
        remote_server, remote = await _serve_remote(app, tokens, tunnels, tls, where, cert_key)
        remote_task = asyncio.create_task(remote_server.serve())
        while not remote_server.started:
            if remote_task.done():
                raise ShiploopError(
                    f"the TLS API could not listen on {where.bind}:{where.port}",
                    hint="pick another: --listen HOST:PORT",
                )
            await asyncio.sleep(0.02)
        cp.tick_hooks.append(tunnels.tick)
    targets = TargetPublisher(cp, api_port)  # file_sd files for Prometheus, kept in step each tick
    targets.update()
    cp.tick_hooks.append(targets.tick)
    try:
        prom = PrometheusWiring.start(cp, prometheus_bin)
    except ShiploopError as e:  # everything else is up: serve without it, and say why
        print(f"warning: prometheus not started: {e.line()}", flush=True)
        prom = None
    if prom is not None:
        cp.tick_hooks.append(prom.tick)
    api_url = f"http://127.0.0.1:{api_port}"
    app.state.status_links = lambda: {
        "api": api_url,
        "dashboard": f"{api_url}/",
        "prometheus": prom.url if prom is not None else None,
    }
    info_path = cp.state_dir / "daemon.json"
    start_time = process_start_time(os.getpid())
    record: dict[str, Any] = {"pid": os.getpid(), "start_time": start_time, "api_port": api_port}
    if remote is not None:
        record["remote"] = remote
    info_path.write_text(json.dumps(record))
    if announce:
        extra = f", Prometheus {prom.url}" if prom is not None else ""
        print(f"shiploop is up: gateway {cp.gateway_url}, API http://127.0.0.1:{api_port}{extra}", flush=True)
        if remote is not None:
            print(f"shared on {remote['url']} (certificate {remote['cert']})", flush=True)

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    supervisor.cancel()
    if tunnels is not None:
        await tunnels.close()
    await readings.aclose()
    await observer.close()
    if prom is not None:
        await asyncio.to_thread(prom.stop)
    await cp.shutdown()
    targets.files.clear()
    server.should_exit = True
    await server_task
    if remote_task is not None:
        remote_server.should_exit = True
        await remote_task
    info_path.unlink(missing_ok=True)
    return 0


async def _serve_remote(
    app: Any, tokens: Tokens, tunnels: TunnelServer, tls: ssl.SSLContext, where: Listen, cert_key: tuple[Path, Path]
) -> tuple[uvicorn.Server, dict[str, Any]]:
    """The API again over TLS on --listen (every request with a token), and the tunnel endpoint beside it."""
    cert, key = cert_key
    server = uvicorn.Server(
        uvicorn.Config(
            RemoteGate(app, tokens),
            host=where.bind,
            port=where.port,
            ssl_certfile=str(cert),
            ssl_keyfile=str(key),
            log_level="warning",
            lifespan="off",
        )
    )
    try:
        await tunnels.start(where.bind, where.tunnel_port, tls)
    except OSError as e:
        raise ShiploopError(
            f"the tunnel endpoint could not listen on {where.bind}:{where.tunnel_port}: {e.strerror}",
            hint="the tunnel takes the API port + 1: pick another with --listen HOST:PORT",
        ) from None
    return server, {"url": where.url, "cert": str(cert), "tunnel_port": where.tunnel_port}


def _drop_user(tunnels: TunnelServer | None) -> Callable[[str], Awaitable[None]]:
    async def drop(user: str) -> None:
        if tunnels is not None:
            await tunnels.drop_user(user)

    return drop


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shiploop-daemon")
    parser.add_argument("root", type=Path)
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--prometheus", action="store_true", help="also run a Prometheus scraping the project")
    parser.add_argument("--listen", default=None, help="HOST[:PORT]: also serve the API over TLS there (shared host)")
    args = parser.parse_args(argv)
    # Everything the daemon writes (store, logs, xds, records) is for its owner alone.
    os.umask(PRIVATE_UMASK)
    log_to_stderr()
    try:
        root = args.root.resolve()
        return asyncio.run(serve(root, args.port, announce=True, prometheus=args.prometheus, listen=args.listen))
    except ShiploopError as e:
        print(f"error: {e.line()}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
