"""An experiment as HTML, from the API's JSON: the offline report (`experiment report --html`) and the
dashboard's experiment page, which shows the same sections (`report_body`). No script, no network:
charts are inline SVG, and every text from the data is escaped."""

from __future__ import annotations

import html
from typing import Any


def value_text(v: float | None, digits: int = 4) -> str:
    return "-" if v is None else f"{v:.{digits}g}"


def _signed(v: float | None) -> str:
    return "-" if v is None else f"{v:+.4g}"


def _interval(iv: list[float | None] | None, too_few: str = "units") -> str:
    if not iv or iv[0] is None or iv[1] is None:
        return f"not yet (too few {too_few})"
    return f"[{iv[0]:+.4g}, {iv[1]:+.4g}]"


def lift_line(s: dict[str, Any]) -> str:
    lift = s["lift"]
    rel = f" ({lift['relative'] * 100:+.1f}%)" if lift.get("relative") is not None else ""
    return f"lift {_signed(lift['absolute'])}{rel}, always-valid 95% interval {_interval(lift['interval'])}"


def secondary_text(m: dict[str, Any]) -> str:
    """A secondary metric in one line: the value per variant, the lift and its interval (or why not)."""
    if not m.get("measured"):
        return str(m.get("note", "not measured"))
    values = m.get("values") or {}
    request = m.get("level") == "request"
    per = " per request" if request else ""
    interval = _interval(m["lift"]["interval"], "readings of the counters" if request else "units")
    return (
        f"control {value_text(values.get('control'))}, candidate {value_text(values.get('treatment'))}{per}; "
        f"lift {_signed(m['lift']['absolute'])} {interval}"
    )


def cuped_text(c: dict[str, Any] | None) -> str | None:
    """What CUPED did to the primary metric's interval, in one line; None when there was no pre-period."""
    if not c:
        return None
    where = f"{c['units_seen_before']} of the units were seen in {c['pre_period']}"
    if not c.get("applied") or c.get("variance_reduction") is None:
        return f"variance reduction (CUPED): not applied, {where} (it needs 50)"
    ratio = c.get("width_ratio")
    narrower = f", the interval {1 - ratio:.0%} narrower than without" if ratio is not None else ""
    removed = f"{c['variance_reduction']:.0%} of the lift's variance removed"
    return f"variance reduction (CUPED): {removed}{narrower} ({where})"


def _svg_lines(series: list[tuple[str, str, list[tuple[float, float]]]], band: list[tuple[float, float, float]]) -> str:
    """A small line chart: named series of (x, y), and an optional band of (x, lo, hi)."""
    points = [p for _, _, s in series for p in s] + [(x, lo) for x, lo, _ in band] + [(x, hi) for x, _, hi in band]
    if not points:
        return "<p>No data yet.</p>"
    w, h, pad = 640, 220, 40
    xs = [p[0] for p in points]
    ys = [p[1] for p in points] + [0.0]
    x0, x1 = 0.0, max(max(xs), 1.0)  # seconds since the start
    y0, y1 = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1

    def sx(x: float) -> float:
        return pad + (x - x0) / (x1 - x0) * (w - 2 * pad)

    def sy(y: float) -> float:
        return h - pad - (y - y0) / (y1 - y0) * (h - 2 * pad)

    parts = [f'<svg viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img">']
    parts.append(
        f'<line x1="{pad}" x2="{w - pad}" y1="{sy(0):.1f}" y2="{sy(0):.1f}" stroke="#999" stroke-dasharray="4"/>'
    )
    if band:
        upper = " ".join(f"{sx(x):.1f},{sy(hi):.1f}" for x, _, hi in band)
        lower = " ".join(f"{sx(x):.1f},{sy(lo):.1f}" for x, lo, _ in reversed(band))
        parts.append(f'<polygon points="{upper} {lower}" fill="#9ecae1" opacity="0.5"/>')
    for name, color, s in series:
        if s:
            pts = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in s)
            title = f"<title>{html.escape(name)}</title>"
            parts.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="2">{title}</polyline>')
    parts.append(f'<text x="{pad}" y="{h - 8}" font-size="11">0 s</text>')
    parts.append(f'<text x="{w - pad - 60}" y="{h - 8}" font-size="11">{x1 - x0:.0f} s</text>')
    parts.append(f'<text x="4" y="{sy(y1) + 4:.1f}" font-size="11">{y1:.3g}</text>')
    parts.append(f'<text x="4" y="{sy(y0) + 4:.1f}" font-size="11">{y0:.3g}</text>')
    parts.append("</svg>")
    return "".join(parts)


def report_body(r: dict[str, Any]) -> str:
    """The report's sections, without the page around them: the dashboard shows these as they are."""
    e = html.escape
    start = r["started_at"]
    pts = r.get("points", [])
    lift_series = [(p["t"] - start, p["lift"]) for p in pts if p.get("lift") is not None]
    band = [
        (p["t"] - start, p["interval"][0], p["interval"][1])
        for p in pts
        if p.get("interval") and None not in p["interval"]
    ]
    units = {arm: [(p["t"] - start, float(p["units"].get(arm, 0))) for p in pts] for arm in ("control", "treatment")}
    rows = "".join(
        f"<tr><td>{e(v['version'])}</td><td>{e(v['track'])}</td><td>{v['units']}</td><td>{v['events']}</td>"
        f"<td>{e(value_text(v['value']))}</td></tr>"
        for v in r["variants"]
    )
    secondary = "".join(
        f"<tr><td>{e(m['metric'])}</td><td>{e(secondary_text(m))}</td></tr>" for m in r.get("secondary", [])
    )
    guards = "".join(
        f'<tr data-testid="experiment-guardrail"><td>{e(g["name"])}</td><td>{e(g.get("detail") or "")}</td>'
        f"<td>{e(g['verdict'])}</td></tr>"
        for g in r.get("guardrails", [])
    )
    srm = r.get("srm_p")
    if srm is None:
        srm_text = "no units yet"
    else:
        verdict = "mismatch: the split is suspect" if srm < 0.001 else "units split as allocated"
        srm_text = f"p = {srm:.3g} ({verdict})"
    return f"""<p data-testid="experiment-hypothesis"><b>Hypothesis:</b> {e(r["hypothesis"])}</p>
<p class="decision" data-testid="experiment-decision"><b>{e(r["state"])}</b>: {e(r["reason"])}</p>
<h2>Primary metric: {e(r["primary"])}</h2>
<table><tr><th>version</th><th>track</th><th>units</th><th>events</th><th>value</th></tr>{rows}</table>
<p data-testid="experiment-lift">{e(lift_line(r))}. Minimum detectable effect {r["minimum_detectable_effect"]:g}.</p>
{f"<p>{e(cuped)}.</p>" if (cuped := cuped_text(r.get("cuped"))) else ""}
<h3>Lift with its always-valid 95% interval over time</h3>
<div data-testid="experiment-lift-chart">{_svg_lines([("lift", "#08519c", lift_series)], band)}</div>
<h3>Cumulative units per variant</h3>
{_svg_lines([("control", "#636363", units["control"]), ("treatment", "#e6550d", units["treatment"])], [])}
<p>Grey: control; orange: the candidate.</p>
<h2>Sample ratio</h2>
<p data-testid="experiment-srm">{e(srm_text)}</p>
<h2>Guardrails</h2>
<table><tr><th>metric</th><th>detail</th><th>verdict</th></tr>{guards}</table>
<h2>Secondary metrics</h2>
<table><tr><th>metric</th><th>per variant and lift</th></tr>{secondary or '<tr><td colspan="2">none</td></tr>'}</table>
<p><small>Allocation {r["allocation"]:g}% to the candidate; ran {r["elapsed_s"]:.0f} s.</small></p>
"""


def render_html(r: dict[str, Any]) -> str:
    """The offline report: one file, no script, no network."""
    e = html.escape
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Experiment #{r["id"]} of {e(r["service"])}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:720px;margin:2em auto;color:#222}}
table{{border-collapse:collapse;margin:.5em 0}}td,th{{border-bottom:1px solid #ddd;padding:.3em .8em;text-align:left}}
.decision{{font-size:1.2em;padding:.6em;background:#f3f3f3;border-left:4px solid #3182bd}}</style></head>
<body>
<h1>Experiment #{r["id"]} of {e(r["service"])}</h1>
{report_body(r)}</body></html>
"""
