"""`experiment status --json` keeps the issue's shape first; the HTML report is one offline file."""

from __future__ import annotations

from shiploop.cli.experiment import _public
from shiploop.cli.experiment_view import render_html, render_status
from shiploop.experiments.report_html import report_body

STATUS = {
    "id": 3,
    "service": "shop",
    "state": "running",
    "hypothesis": "The one-field form raises signups",
    "primary": "signup per unit",
    "allocation": 50.0,
    "minimum_detectable_effect": 0.01,
    "started_at": 1000.0,
    "ended_at": None,
    "elapsed_s": 60.0,
    "max_duration_s": 1209600.0,
    "variants": [
        {"version": "aaa", "track": "stable", "arm": "control", "units": 100, "events": 10, "value": 0.1},
        {"version": "bbb", "track": "canary", "arm": "treatment", "units": 98, "events": 20, "value": 0.204},
    ],
    "lift": {
        "absolute": 0.104,
        "relative": 1.04,
        "interval": [0.01, 0.2],
        "relative_interval": None,
        "chance_to_beat": 0.99,
    },
    "srm_p": 0.9,
    "guardrails": [{"name": "error_rate", "detail": "", "verdict": "ok"}],
    "secondary": [
        {
            "metric": "app:checkout_total/visits_total",
            "level": "request",
            "measured": True,
            "values": {"control": 0.1, "treatment": 0.125},
            "counts": {"control": {"numerator": 10.0, "denominator": 100.0, "readings": 60}},
            "lift": {"absolute": 0.025, "interval": [-0.01, 0.06]},
        },
        {"metric": "purchase value per unit", "measured": False, "note": "no purchase yet"},
    ],
    "decision": "ship",
    "reason": "Ship: the candidate raises the primary metric by +0.104 (95% interval [+0.01, +0.2]).",
    "points": [
        {"t": 1005.0, "units": {"control": 10, "treatment": 9}, "lift": None, "interval": [None, None]},
        {"t": 1060.0, "units": {"control": 100, "treatment": 98}, "lift": 0.104, "interval": [0.01, 0.2]},
    ],
}


def test_status_json_has_the_issues_shape_first() -> None:
    out = _public(STATUS)
    assert list(out)[:8] == ["state", "hypothesis", "variants", "lift", "srm_p", "guardrails", "decision", "reason"]
    assert out["variants"][0] == {"version": "aaa", "track": "stable", "units": 100, "events": 10, "value": 0.1}
    assert out["lift"] == {"absolute": 0.104, "relative": 1.04, "interval": [0.01, 0.2]}


def test_html_report_is_offline_and_says_the_decision() -> None:
    page = render_html(STATUS)
    assert "<svg" in page and "http://" not in page and "https://" not in page and "<script" not in page
    for text in ("The one-field form raises signups", "Ship: the candidate raises", "aaa", "bbb", "p = 0.9"):
        assert text in page
    # An app-counter metric: the value per variant (per request) and the lift with its interval.
    assert "control 0.1, candidate 0.125 per request; lift +0.025 [-0.01, +0.06]" in page
    assert "no purchase yet" in page
    render_status(STATUS)  # the terminal view renders the same data


def test_the_dashboard_shows_the_reports_sections_escaped() -> None:
    body = report_body({**STATUS, "hypothesis": "<script>alert(1)</script> raises signups"})
    assert "<script" not in body and "&lt;script&gt;" in body
    assert 'data-testid="experiment-lift-chart"' in body and "<svg" in body and "<html" not in body
