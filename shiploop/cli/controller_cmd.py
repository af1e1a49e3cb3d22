"""`shiploop controller`: the rollout controller inside a cluster (the controller Deployment runs it)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated

import typer


def controller(
    namespace: Annotated[str, typer.Option("--namespace", help="the project's namespace (its ConfigMaps and Lease)")],
    prometheus: Annotated[str, typer.Option("--prometheus", help="the Prometheus that scrapes the gateway")],
    project: Annotated[str, typer.Option("--project", help="the `project` label of the gateway's series")],
    health_port: Annotated[
        int, typer.Option("--health-port", min=0, max=65535, help="serve /healthz and the rollout API here")
    ] = 9904,
    address: Annotated[str, typer.Option("--address", help="the address to serve on")] = "0.0.0.0",
    identity: Annotated[
        str | None, typer.Option("--identity", help="this candidate's name in the Lease (default: $POD_NAME)")
    ] = None,
    lease_seconds: Annotated[int, typer.Option("--lease-seconds", min=2, help="the Lease's duration")] = 15,
    interval: Annotated[float, typer.Option("--interval", min=0.05, help="seconds between steps")] = 1.0,
    scrape_interval: Annotated[
        float, typer.Option("--scrape-interval", min=0.1, help="Prometheus's scrape interval for the gateway")
    ] = 5.0,
    token_file: Annotated[
        Path | None, typer.Option("--token-file", help="the API's write token (default: $SHIPLOOP_TOKEN)")
    ] = None,
    api_server: Annotated[
        str | None, typer.Option("--api-server", help="an API server URL, e.g. `kubectl proxy`'s (default: in-cluster)")
    ] = None,
    tls_cert: Annotated[
        Path | None, typer.Option("--tls-cert", help="serve the API over https with this PEM certificate")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="its PEM key")] = None,
    auto_start: Annotated[
        bool, typer.Option("--auto-start/--no-auto-start", help="start a rollout for every candidate deploy placed")
    ] = True,
) -> None:
    """Run the rollout controller in a cluster: leader through a Lease, weights into the routing ConfigMap."""
    # Here, not at the top: every `shiploop` command imports this module, and asyncio (with ssl
    # and logging) is ~35 ms of CPU (python -X importtime), which only `controller` needs.
    import asyncio
    import logging
    import signal
    import socket

    import uvicorn

    from shiploop.k8s.controller import ClusterController
    from shiploop.k8s.controller_api import create_app
    from shiploop.k8s.deploy import connect
    from shiploop.logsetup import log_to_stderr
    from shiploop.rollout.prometheus_readings import PrometheusReadings

    log_to_stderr()
    name = identity or os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
    token = os.environ.get("SHIPLOOP_TOKEN") or None
    if token_file is not None:
        try:
            token = token_file.read_text().strip() or None
        except OSError as e:  # the Secret is optional: without it, writes are off
            logging.getLogger("shiploop.controller").warning("no API token (%s): writes are off", e.strerror)
    client = connect(None, namespace, server=api_server)
    readings = PrometheusReadings(lambda: prometheus, project, time.time, scrape_interval_s=scrape_interval)
    ctl = ClusterController(client, namespace, name, readings, lease_s=lease_seconds, auto_start=auto_start)
    app = create_app(ctl, project, token)
    # With TLS the CLI can point at it as at a remote daemon (SHIPLOOP_URL=https://..., SHIPLOOP_CA=the cert).
    if (tls_cert or tls_key) and not (tls_cert and tls_key and tls_cert.is_file() and tls_key.is_file()):
        # The Secret is optional in the rendered pod: without it the API is plain http (port-forward only).
        logging.getLogger("shiploop.controller").warning("no TLS certificate and key at %s, %s: serving http",
                                                         tls_cert, tls_key)  # fmt: skip
        tls_cert = tls_key = None
    config = uvicorn.Config(app, host=address, port=health_port, log_level="warning", lifespan="off",
                            ssl_certfile=tls_cert, ssl_keyfile=tls_key)  # fmt: skip
    server = uvicorn.Server(config)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        serving = asyncio.create_task(server.serve())  # uvicorn takes SIGTERM/SIGINT over while it serves
        stepping = asyncio.create_task(ctl.run(stop, interval))
        try:
            await asyncio.wait({serving, stepping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.set()
            server.should_exit = True
            await asyncio.gather(serving, stepping, return_exceptions=True)
            await readings.aclose()
        if not serving.cancelled() and serving.exception() is None and not server.started:
            raise SystemExit(f"cannot serve the controller API on {address}:{health_port}")  # e.g. the port is taken
        for task in (serving, stepping):
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]  # a bug: the traceback, and the pod restarts

    asyncio.run(main())
