"""`shiploop status` without the command-line machinery: fetch, render, print.

Kept free of typer so that `shiploop status` can answer through the fast path
in cli/entry.py, which skips importing typer and building every command (~60%
of the CLI's start-up CPU time, measured by bench/cli_latency.py). The typer
command in main.py uses the same functions, so both print the same.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from shiploop.cli.client import DaemonClient, find_root
from shiploop.contract import Status
from shiploop.naming import ACTIVE_ROLLOUT_STATES


def emit_json(data: Any) -> None:
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json")
    elif isinstance(data, list):
        data = [d.model_dump(mode="json") if isinstance(d, BaseModel) else d for d in data]
    print(json.dumps(data, indent=2, default=str))


def status_view(data: Status) -> Any:
    from rich.console import Group

    return Group(*status_parts(data))


def render_status(console: Console, data: Status) -> None:
    for part in status_parts(data):
        console.print(part, soft_wrap=isinstance(part, str))


def id_column(table: Table, name: str) -> None:
    # Ids are what commands take as arguments: never cut them, whatever the width.
    table.add_column(name, no_wrap=True, overflow="ignore", min_width=12)


def status_parts(data: Status) -> list[Any]:
    parts: list[Any] = [
        f"gateway [bold]{data.gateway}[/]  (routing generation {data.generation})",
        f"api {data.api or '-'}  envoy admin {data.envoy_admin or '-'}",
        f"state {data.state_dir or '-'}  logs {data.logs_dir or '-'}",
    ]
    # Text from the daemon (errors, log lines, reasons) is escaped: a "[" in it is not rich markup.
    parts.extend(f"[red]{'' if d.startswith('degraded') else 'degraded: '}{escape(d)}[/]" for d in data.degraded)
    if data.envoy is not None and data.envoy.restarts:
        parts.append(f"[yellow]envoy restarted {data.envoy.restarts} time(s) by shiploop[/]")
    table = Table()
    id_column(table, "service")
    id_column(table, "version")
    for name in ("track", "weight", "ready", "restarts", "req/s", "5xx", "p95", "routes"):
        table.add_column(name)
    notes: list[str] = []
    for svc in data.services:
        for i, v in enumerate(svc.versions):
            style = "green" if v.ready == v.replicas else "yellow"
            t = v.traffic
            table.add_row(
                svc.name if i == 0 else "",
                v.id,
                v.track,
                f"{v.weight}%",
                f"[{style}]{v.ready}/{v.replicas}[/]",
                "-" if v.restarts is None else str(v.restarts),
                f"{t.rps:g}" if t else "-",
                f"{t.error_rate:.2%}" if t and t.error_rate is not None else "-",
                f"{t.p95_ms:g} ms" if t and t.p95_ms is not None else "-",
                escape(", ".join(svc.routes)) if i == 0 else "",
            )
            if t:
                notes.extend(f"{svc.name}@{v.id}: metrics: {e}" for e in t.source_errors)
            if v.restarts:  # a crash loop: how often, how it ended, what it said last
                code = "unknown" if v.last_exit_code is None else v.last_exit_code
                notes.append(
                    f"{svc.name}@{v.id}: {v.restarts} restarts, last exit code {code}: {v.last_log_line or ''}"
                )
        for hr in svc.header_routes:
            table.add_row("", hr.version, escape(f"header {hr.header}={hr.value}"), "-", "", "", "", "", "", "")
    parts.append(table)
    parts.extend(f"[yellow]{escape(note)}[/]" for note in notes)
    for svc in data.services:
        r = svc.rollout
        if r and r.state in ACTIVE_ROLLOUT_STATES:
            parts.append(
                f"{svc.name}: rollout #{r.id} of {r.candidate} is {r.state} at step "
                f"{r.step + 1} ({r.weight}%): shiploop rollout status {svc.name}"
            )
            if r.summary:
                parts.append(f"  {escape(r.summary)}")
    return parts


def show_status(console: Console, as_json: bool) -> None:
    """`shiploop status [--json]`."""
    data = DaemonClient(find_root(Path.cwd())).get(Status, "/v1/status")
    emit_json(data) if as_json else render_status(console, data)
