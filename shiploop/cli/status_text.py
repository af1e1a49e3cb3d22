"""`shiploop status` as text, drawn from the API's JSON: no pydantic, no rich.

`shiploop status` is what people and scripts run most, and its first output
must come within 250 ms (issue 8, item 6). Importing rich and pydantic cost
more than everything else `status` does together (bench/cli_latency.py,
`python -X importtime`), so this module draws the text from the plain JSON the
daemon sends. Its shape is contract.Status, which the daemon validates on the
way out; the full command line and the fast path of cli/entry.py both print
through `status_text`, so they print the same.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from shiploop.naming import ACTIVE_ROLLOUT_STATES

STYLES = {"bold": "1", "red": "31", "green": "32", "yellow": "33"}
# Text from the daemon (errors, log lines, reasons) is printed literally: control
# characters in it could move the cursor or recolour the terminal.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")

Cell = tuple[str, str | None]  # text, style


def wants_color(stream: Any = None) -> bool:
    """Colours for a terminal, as other tools decide it: NO_COLOR and TERM=dumb turn them
    off, FORCE_COLOR on."""
    if os.environ.get("FORCE_COLOR"):
        return True
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    stream = stream or sys.stdout
    return bool(getattr(stream, "isatty", lambda: False)())


def literal(text: Any) -> str:
    return _CONTROL.sub("?", str(text)).replace("\n", " ")


class Painter:
    def __init__(self, color: bool) -> None:
        self.color = color

    def __call__(self, text: str, style: str | None) -> str:
        if not self.color or style is None:
            return text
        return f"\x1b[{STYLES[style]}m{text}\x1b[0m"


def table(headers: Sequence[str], rows: Sequence[Sequence[Cell]], paint: Painter) -> list[str]:
    """Columns as wide as their widest cell, two spaces apart; nothing is ever cut
    (ids are what commands take as arguments)."""
    widths = [max([len(h), *(len(row[i][0]) for row in rows)]) for i, h in enumerate(headers)]
    widths[-1] = 0  # the last column is not padded: no trailing spaces

    def line(cells: Sequence[Cell]) -> str:
        return "  ".join(paint(text.ljust(w), style) for (text, style), w in zip(cells, widths, strict=True))

    return [line([(h, "bold") for h in headers]), *(line(row).rstrip() for row in rows)]


def _traffic_cells(t: Mapping[str, Any] | None) -> list[Cell]:
    if not t:
        return [("-", None)] * 3
    rate, p95 = t.get("error_rate"), t.get("p95_ms")
    return [
        (f"{t['rps']:g}", None),
        ("-" if rate is None else f"{rate:.2%}", None),
        ("-" if p95 is None else f"{p95:g} ms", None),
    ]


def status_text(data: Mapping[str, Any], color: bool = False) -> str:
    """The human view of GET /v1/status."""
    paint = Painter(color)
    lines = [
        f"gateway {paint(data['gateway'], 'bold')}  (routing generation {data['generation']})",
        f"api {data.get('api') or '-'}  envoy admin {data.get('envoy_admin') or '-'}",
        f"state {data.get('state_dir') or '-'}  logs {data.get('logs_dir') or '-'}",
    ]
    for d in data.get("degraded") or []:
        lines.append(paint(literal(d if d.startswith("degraded") else f"degraded: {d}"), "red"))
    envoy = data.get("envoy") or {}
    if envoy.get("restarts"):
        lines.append(paint(f"envoy restarted {envoy['restarts']} time(s) by shiploop", "yellow"))
    rows: list[list[Cell]] = []
    notes: list[str] = []
    for svc in data["services"]:
        name = literal(svc["name"])
        for i, v in enumerate(svc["versions"]):
            ready_style = "green" if v["ready"] == v["replicas"] else "yellow"
            restarts = v.get("restarts")
            rows.append(
                [
                    (name if i == 0 else "", None),
                    (v["id"], None),
                    (literal(v.get("track")), None),
                    (f"{v.get('weight')}%", None),
                    (f"{v['ready']}/{v['replicas']}", ready_style),
                    ("-" if restarts is None else str(restarts), None),
                    *_traffic_cells(v.get("traffic")),
                    (literal(", ".join(svc.get("routes") or [])) if i == 0 else "", None),
                ]
            )
            traffic = v.get("traffic") or {}
            notes.extend(f"{name}@{v['id']}: metrics: {literal(e)}" for e in traffic.get("source_errors") or [])
            if restarts:  # a crash loop: how often, how it ended, what it said last
                code = "unknown" if v.get("last_exit_code") is None else v["last_exit_code"]
                last_line = literal(v.get("last_log_line") or "")
                notes.append(f"{name}@{v['id']}: {restarts} restarts, last exit code {code}: {last_line}")
        for hr in svc.get("header_routes") or []:
            header = literal(f"header {hr['header']}={hr['value']}")
            rows.append([("", None), (hr["version"], None), (header, None), ("-", None), *[("", None)] * 6])
        for ic in svc.get("intercepts") or []:  # personal routes held by a developer's CLI (intercept, dev)
            match = literal(f"{ic['header']}={ic['value']}" if ic["header"] else "all requests")
            kind = literal(ic.get("kind") or "intercept")
            rows.append(
                [("", None), (literal(ic["target"]), None), (f"{kind} {match}", None), ("-", None), *[("", None)] * 6]
            )
            held = literal(f"{ic['owner']} (pid {ic['pid']})" if ic.get("pid") else ic["owner"])
            notes.append(f"{name}: {kind} {match} -> {literal(ic['target'])} held by {held}; see: shiploop intercepts")
    headers = ("service", "version", "track", "weight", "ready", "restarts", "req/s", "5xx", "p95", "routes")
    lines.extend(table(headers, rows, paint))
    lines.extend(paint(note, "yellow") for note in notes)
    for svc in data["services"]:
        r = svc.get("rollout")
        if r and r["state"] in ACTIVE_ROLLOUT_STATES:
            lines.append(
                f"{svc['name']}: rollout #{r['id']} of {r['candidate']} is {r['state']} at step "
                f"{r['step'] + 1} ({r['weight']}%): shiploop rollout status {svc['name']}"
            )
            if r.get("summary"):
                lines.append(f"  {literal(r['summary'])}")
        e = svc.get("experiment")
        if e:
            lines.append(
                f"{svc['name']}: experiment #{e['id']} of {e['treatment']} is {e['state']} "
                f"(\"{literal(e['hypothesis'])}\"): shiploop experiment status {svc['name']}"
            )
    return "\n".join(lines)
