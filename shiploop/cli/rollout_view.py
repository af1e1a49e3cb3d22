"""Rendering a rollout for people: where it stands in a sentence, each step against the policy,
each guardrail's estimate with its interval and tolerance, and the commands that move it on.

Everything shown comes from the daemon's view (`rollout status --json` prints the same numbers).
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

EXIT_CODES = {"promoted": 0, "rolled_back": 3, "failed": 3, "aborted": 3, "held": 4}


def _rate(x: float | None) -> str:
    """A rate as a percentage; '-' when there were no requests to take it over."""
    return "-" if x is None else f"{x * 100:.2f}%"


def _points(x: float | None) -> str:
    """A difference of two rates, in percentage points."""
    return "-" if x is None else f"{x * 100:+.2f} pts"


def _seconds(s: float) -> str:
    return f"{s / 60:g}m" if s >= 60 and s % 60 == 0 else f"{s:.0f}s"


def _arm(a: dict[str, Any] | None) -> str:
    if not a:
        return "-"
    return f"{a['requests']} ({a['errors']} errors, {_rate(a.get('error_rate'))})" if a["requests"] else "0"


def _steps_table(r: dict[str, Any]) -> Table:
    policy = r["policy"]
    word = {"canary": "candidate", "mirror": "shadow", "ab": "variant"}[r["strategy"]]
    table = Table(
        "step",
        "weight" if r["strategy"] == "canary" else "split",
        f"time (min {_seconds(policy['min_step_s'])}, max {_seconds(policy['max_step_s'])})",
        f"{word} requests (need {policy['min_samples']})",
        "baseline requests",
    )
    total = len(r["steps"]) if r["strategy"] == "canary" else 1
    for s in r.get("progress", []):
        mark = " ◀" if s["current"] else ""
        table.add_row(
            f"{s['index'] + 1}/{total}{mark}",
            f"{s['weight']}%" if r["strategy"] == "canary" else r["strategy"],
            _seconds(s["elapsed_s"]),
            _arm(s["candidate"]),
            _arm(s["baseline"]),
        )
    return table


def _guardrails_table(guardrails: list[dict[str, Any]]) -> Table:
    table = Table("guardrail", "candidate", "baseline", "difference", "interval", "tolerance", "verdict")
    for g in guardrails:
        verdict = {"harm": "[red]harm[/]", "ok": "[green]ok[/]"}.get(g["verdict"], "watching")
        interval = g.get("interval")
        c, b = g["candidate"], g["baseline"]
        table.add_row(
            g["name"] + (f" [dim]{g['detail']}[/]" if g.get("detail") else ""),
            f"{_rate(g['candidate_rate'])} ({c['events']}/{c['trials']})",
            f"{_rate(g['baseline_rate'])} ({b['events']}/{b['trials']})",
            _points(g["estimate"]),
            f"{_points(interval[0])} .. {_points(interval[1])}" if interval else "-",
            f"{_points(g['tolerance'])}",
            verdict,
        )
    return table


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
    parts: list[Any] = [head, Text(r.get("summary") or "")]
    if r.get("progress"):
        parts.append(_steps_table(r))
    if r.get("guardrails"):
        parts.append(_guardrails_table(r["guardrails"]))
    last = r.get("last") or {}
    for breach in last.get("limits", []):
        parts.append(Text(f"limit: {breach}", "red"))
    for err in last.get("source_errors", []):
        parts.append(Text(f"metrics source error: {err}", "yellow"))
    for command in r.get("next", []):
        parts.append(Text(f"  {command}", "cyan"))
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
        reason = r.get("reason") or ""
        if r.get("rule") and not reason.startswith(r["rule"]):
            reason = f"{r['rule']}: {reason}"
        table.add_row(
            str(r["id"]),
            r["candidate"],
            r["strategy"],
            Text(r["state"], _state_style(r["state"])),
            started,
            took,
            Text(reason),
        )
    return table


def render_plan(p: dict[str, Any]) -> Group:
    """`rollout plan`: time per step and the smallest error regression caught before 100%."""
    head = Text.assemble(
        (f"{p['service']}", "bold"),
        f": {p['strategy']} at {p['rps']:g} rps, baseline errors {_rate(p['base_rate'])}",
    )
    t = Table(box=None, show_header=True, header_style="dim")
    for col in ("step", "weight", "expected time", "reaches min_samples"):
        t.add_column(col)
    for i, s in enumerate(p["steps"], 1):
        t.add_row(str(i), f"{s['weight']}%", f"{s['expected_s']:.0f}s", "yes" if s["reaches_min_samples"] else "no")
    smallest = p["smallest_regression"]
    catch = (
        f"smallest error regression caught before 100% with power {p['power']:g}: "
        f"+{smallest * 100:.2f} points ({_rate(p['base_rate'])} -> {_rate(p['base_rate'] + smallest)})"
        if smallest is not None
        else "no error-rate guardrail, or too little traffic before 100% to promise a catch"
    )
    short = next((i for i, s in enumerate(p["steps"], 1) if not s["reaches_min_samples"]), None)
    timing = (
        f"identical candidate promoted in about {p['total_s']:.0f}s"
        if short is None
        else f"step {short} cannot reach min_samples within max_step: the rollout stops there (on_no_data)"
    )
    lines: list[Any] = [head, t, Text(timing), Text(catch)]
    lines.extend(Text(f"warning: {w}", style="yellow") for w in p["warnings"])
    return Group(*lines)
