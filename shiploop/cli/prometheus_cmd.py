"""`shiploop prometheus-config [--out FILE]`: scrape config for an existing Prometheus."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from shiploop.paths import find_root, state_dir_of


def prometheus_config_command(
    out: Annotated[Path | None, typer.Option("--out", help="write it to FILE instead of stdout")] = None,
) -> None:
    """A Prometheus scrape config: the daemon, Envoy's stats listener, every replica (file_sd)."""
    # Here, not at the top: `shiploop status` must not pay for the spec models (tests/integration/test_cli.py).
    from shiploop.spec import load_project
    from shiploop.telemetry.scrape_config import prometheus_config
    from shiploop.telemetry.targets import write_atomically

    root = find_root(Path.cwd())
    text = prometheus_config(state_dir_of(root), load_project(root).name)
    if out is None:
        print(text, end="")
        return
    write_atomically(out, text)
    print(f"wrote {out}; check it with: promtool check config {out}")
