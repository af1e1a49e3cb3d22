"""`shiploop agent`: the gateway pod's agent (routing-state document -> Envoy xDS files)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def agent(
    state: Annotated[Path, typer.Option("--state", help="the routing-state document (the routing ConfigMap's file)")],
    xds_dir: Annotated[Path, typer.Option("--xds-dir", help="where Envoy reads its xDS files (shared with Envoy)")],
    stats_port: Annotated[
        int | None, typer.Option("--stats-port", min=1, max=65535, help="Envoy's stats-only listener (GET /metrics)")
    ] = None,
    stats_address: Annotated[str, typer.Option("--stats-address", help="its address")] = "0.0.0.0",
    health_port: Annotated[
        int | None, typer.Option("--health-port", min=0, max=65535, help="serve GET /healthz here")
    ] = None,
    interval: Annotated[
        float, typer.Option("--interval", min=0.05, help="seconds between looks at the document")
    ] = 1.0,
    once: Annotated[
        bool, typer.Option("--once", help="write the bootstrap and the first generation, then exit")
    ] = False,
) -> None:
    """Keep Envoy's xDS files in step with a routing-state document (run inside the gateway pod)."""
    # Here, not at the top: every `shiploop` command imports this module, and asyncio (with ssl
    # and logging) is ~5% of the CPU of importing the CLI, which only `agent` needs.
    import asyncio
    import signal

    from shiploop.k8s.agent import Agent, serve_health
    from shiploop.logsetup import log_to_stderr

    log_to_stderr()
    xds_dir.mkdir(parents=True, exist_ok=True)
    worker = Agent(state, xds_dir, stats_port=stats_port, stats_address=stats_address)
    worker.write_bootstrap()
    if once:
        asyncio.run(worker.apply_if_changed())  # a bad document fails the init container, one line
        return
    server = serve_health(worker.health, health_port) if health_port is not None else None

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await worker.run(interval, stop)

    try:
        asyncio.run(main())
    finally:
        if server is not None:
            server.shutdown()
