"""How an experiment looks in the terminal (from the API's JSON); the HTML report is experiments.report_html's."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from shiploop.experiments.report_html import cuped_text, lift_line, render_html, secondary_text, value_text

__all__ = ["EXIT_CODES", "history_table", "render_html", "render_plan", "render_status"]

# `experiment start --wait` and `status --wait` exit like `rollout`: 0 shipped, 3 stopped, 4 inconclusive or held.
EXIT_CODES = {"shipped": 0, "stopped": 3, "discarded": 3, "ended": 3, "inconclusive": 4, "held": 4}


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "never (no traffic)"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def render_status(s: dict[str, Any]) -> Group:
    head = Text(f"experiment #{s['id']} of {s['service']}: {s['state']}\n", style="bold")
    head.append(f"hypothesis: {s['hypothesis']}\n", style="")
    head.append(f"primary metric: {s['primary']}, {s['allocation']:g}% of units to the candidate", style="dim")
    table = Table(box=None, pad_edge=False)
    for col in ("version", "track", "units", "events", "value"):
        table.add_column(col, justify="right" if col in ("units", "events", "value") else "left", no_wrap=True)
    for v in s["variants"]:
        table.add_row(v["version"], v["track"], str(v["units"]), str(v["events"]), value_text(v["value"]))
    lines = [lift_line(s)]
    ctb = s["lift"].get("chance_to_beat")
    if ctb is not None:
        lines.append(f"chance the candidate is better: {ctb:.0%} (shown, never the decision rule)")
    cuped = cuped_text(s.get("cuped"))
    if cuped is not None:
        lines.append(cuped)
    srm = s.get("srm_p")
    lines.append(f"sample ratio: p = {srm:.3g}" if srm is not None else "sample ratio: no units yet")
    for g in s.get("guardrails", []):
        detail = f" ({g['detail']})" if g.get("detail") else ""
        lines.append(f"guardrail {g['name']}{detail}: {g['verdict']}")
    for m in s.get("secondary", []):
        lines.append(f"secondary {m['metric']}: {secondary_text(m)}")
    lines.append(f"decision: {s['reason']}")
    return Group(head, table, Text("\n".join(lines)))


def render_plan(p: dict[str, Any]) -> str:
    src = p.get("sources") or {}
    rate = f"{p['units_per_second']:.3g} units/s" + (
        f" ({src['units_per_second']})" if "units_per_second" in src else ""
    )
    base = f"{p['baseline']:.3g}" + (f" ({src['baseline']})" if "baseline" in src else "")
    return (
        f"{p['hypothesis']}\n"
        f"baseline {base}, minimum detectable effect {p['minimum_detectable_effect']:g}, "
        f"{p['allocation']:g}% to the candidate, at {rate}\n"
        f"fixed horizon (power 0.8): {p['fixed_units']} units, {_duration(p['fixed_seconds'])}\n"
        f"sequential (look any time): {p['sequential_units']} units, {_duration(p['sequential_seconds'])}\n"
        f"max_duration: {_duration(p['max_duration_s'])}"
    )


def history_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False)
    for col in ("#", "started", "state", "candidate", "hypothesis", "result"):
        table.add_column(col, overflow="fold")
    for r in rows:
        started = time.strftime("%Y-%m-%d %H:%M", time.localtime(r["started_at"]))
        table.add_row(str(r["id"]), started, r["state"], r["treatment"], r["hypothesis"], r.get("reason") or "")
    return table
