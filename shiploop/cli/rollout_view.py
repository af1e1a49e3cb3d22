"""Rendering a rollout for people: the step, the split, each guardrail's estimate and bound, the reason."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

EXIT_CODES = {"promoted": 0, "rolled_back": 3, "failed": 3, "aborted": 3, "held": 4}


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.2f}%"


def render(r: dict[str, Any]) -> Group:
    steps = r["steps"] if r["strategy"] == "canary" else [r["strategy"]]
    step_text = f"step {r['step'] + 1}/{len(steps)}" if r["strategy"] == "canary" else r["strategy"]
    head = Text.assemble(
        (f"rollout #{r['id']} {r['service']}@{r['candidate']}", "bold"),
        f" vs {r['baseline']}  ",
        (r["state"], _state_style(r["state"])),
        f"  {step_text}",
        f"  candidate weight {r['weight']}%" if r["strategy"] == "canary" else "",
        f"  ({time.time() - r['started_at']:.0f}s)",
    )
    parts: list[Any] = [head]
    last = r.get("last") or {}
    if last:
        c, b = last["candidate"], last["baseline"]
        parts.append(
            Text(
                f"requests since start: candidate {c['requests']} ({c['errors']} errors), "
                f"baseline {b['requests']} ({b['errors']} errors)"
            )
        )
        table = Table("guardrail", "cand.", "base", "diff", "upper bound", "tolerance", "verdict")
        for g in last.get("guardrails", []):
            verdict = "[red]harm[/]" if g["harmful"] else ("[green]ok[/]" if g["noninferior"] else "watching")
            table.add_row(
                g["name"] + (f" [dim]{g['detail']}[/]" if g.get("detail") else ""),
                _pct(g["candidate_rate"]),
                _pct(g["baseline_rate"]),
                _pct(g["estimate"]),
                _pct(g["upper_bound"]),
                _pct(g["tolerance"]),
                verdict,
            )
        parts.append(table)
        for breach in last.get("limits", []):
            parts.append(Text(f"limit: {breach}", "red"))
        for err in last.get("source_errors", []):
            parts.append(Text(f"metrics source error: {err}", "yellow"))
    reason = r.get("reason") or last.get("reason")
    if reason:
        parts.append(Text(f"reason: {reason}"))
    return Group(*parts)


def _state_style(state: str) -> str:
    return {
        "promoted": "bold green",
        "rolled_back": "bold red",
        "failed": "bold red",
        "held": "bold yellow",
        "aborted": "bold red",
    }.get(state, "cyan")


def history_table(rows: list[dict[str, Any]]) -> Table:
    table = Table("#", "candidate", "strategy", "outcome", "started", "took", "decisive evidence")
    for r in rows:
        started = time.strftime("%m-%d %H:%M", time.localtime(r["started_at"]))
        took = f"{r['updated_at'] - r['started_at']:.0f}s"
        table.add_row(
            str(r["id"]),
            r["candidate"],
            r["strategy"],
            Text(r["state"], _state_style(r["state"])),
            started,
            took,
            r.get("reason") or "",
        )
    return table
