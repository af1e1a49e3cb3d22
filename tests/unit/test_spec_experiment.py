"""The `experiment:` block of service.yaml: the issue's example loads, every bad field is one line naming it."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from shiploop.spec import SpecError, load_service, parse_duration

BASE = 'name: shop\nrun:\n  command: ["python", "app.py"]\n'
EXAMPLE = """\
experiment:
  hypothesis: "The one-field signup form raises signups per visitor"
  unit: {cookie: shiploop_uid}
  allocation: 50
  metrics:
    primary: {event: signup}
    secondary:
      - {event: purchase, value: sum}
      - {app: checkout_total/visits_total}
  minimum_detectable_effect: 0.01
  guardrails: [{metric: error_rate, tolerance: 0.002}, {metric: latency, quantile: 0.95, tolerance: 0.05}]
  max_duration: 14d
"""


def _load(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "shop" / "service.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return load_service(path)


def test_the_issue_example_loads(tmp_path: Path) -> None:
    exp = _load(tmp_path, BASE + EXAMPLE).experiment
    assert exp is not None
    assert (exp.unit.kind, exp.unit.name, exp.allocation) == ("cookie", "shiploop_uid", 50)
    assert exp.metrics.primary.kind == "conversion"
    assert [m.kind for m in exp.metrics.secondary] == ["sum", "app_ratio"]
    assert (exp.metrics.secondary[1].numerator, exp.metrics.secondary[1].denominator) == (
        "checkout_total",
        "visits_total",
    )
    assert exp.max_duration == 14 * 86400
    assert [g.metric for g in exp.guardrails] == ["error_rate", "latency"]


def test_header_unit_and_defaults(tmp_path: Path) -> None:
    text = BASE + (
        "experiment:\n  hypothesis: h\n  unit: {header: X-User-Id}\n  metrics: {primary: {event: signup}}\n"
        "  minimum_detectable_effect: 0.02\n"
    )
    exp = _load(tmp_path, text).experiment
    assert exp is not None
    assert (exp.unit.kind, exp.unit.name, exp.allocation, exp.alpha) == ("header", "x-user-id", 50, 0.05)
    assert exp.max_duration == parse_duration("14d") == parse_duration("336h")
    assert _load(tmp_path, BASE).experiment is None


def _replace(line: str, new: str) -> str:
    assert line in EXAMPLE
    return BASE + EXAMPLE.replace(line, new)


# (id, service.yaml, line, field, fragments)
CASES = [
    (
        "no-hypothesis",
        BASE + EXAMPLE.replace('  hypothesis: "The one-field signup form raises signups per visitor"\n', ""),
        4,
        "experiment.hypothesis",
        ["required field is missing"],
    ),
    (
        "unit-both",
        _replace("unit: {cookie: shiploop_uid}", "unit: {cookie: a, header: b}"),
        6,
        "experiment.unit",
        ["a unit is a cookie or a header (found cookie and header)"],
    ),
    ("unit-neither", _replace("unit: {cookie: shiploop_uid}", "unit: {}"), 6, "experiment.unit", ["found neither"]),
    (
        "unit-bad-cookie",
        _replace("unit: {cookie: shiploop_uid}", "unit: {cookie: 'a b'}"),
        6,
        "experiment.unit",
        ["invalid cookie name 'a b'"],
    ),
    (
        "unit-reserved-header",
        _replace("unit: {cookie: shiploop_uid}", "unit: {header: Cookie}"),
        6,
        "experiment.unit",
        ["header 'cookie' is set by shiploop or the browser"],
    ),
    (
        "unit-kind",
        _replace("unit: {cookie: shiploop_uid}", "unit: {session: x}"),
        6,
        "experiment.unit.session",
        ["unknown field"],
    ),
    ("allocation-100", _replace("allocation: 50", "allocation: 100"), 7, "experiment.allocation", ["less than 100"]),
    ("allocation-0", _replace("allocation: 50", "allocation: 0"), 7, "experiment.allocation", ["must be more than 0"]),
    (
        "primary-app",
        _replace("primary: {event: signup}", "primary: {app: a_total/b_total}"),
        9,
        "experiment.metrics.primary",
        ["the primary metric must be an event"],
    ),
    (
        "metric-both",
        _replace("primary: {event: signup}", "primary: {event: signup, app: a/b}"),
        9,
        "experiment.metrics.primary",
        ["a metric is an event or an app ratio"],
    ),
    (
        "metric-bad-event",
        _replace("primary: {event: signup}", "primary: {event: 'Sign Up'}"),
        9,
        "experiment.metrics.primary",
        ["invalid event name 'Sign Up'"],
    ),
    (
        "metric-value",
        _replace("{event: purchase, value: sum}", "{event: purchase, value: mean}"),
        11,
        "experiment.metrics.secondary[0].value",
        ["'mean'", "sum"],
    ),
    (
        "metric-bad-app",
        _replace("{app: checkout_total/visits_total}", "{app: checkout_total}"),
        12,
        "experiment.metrics.secondary[1].app",
        ["invalid app ratio 'checkout_total'"],
    ),
    (
        "mde-missing",
        _replace("  minimum_detectable_effect: 0.01\n", ""),
        4,
        "experiment.minimum_detectable_effect",
        ["required field is missing"],
    ),
    (
        "mde-rate",
        _replace("minimum_detectable_effect: 0.01", "minimum_detectable_effect: 5"),
        13,
        "experiment.minimum_detectable_effect",
        ["absolute difference of rates, got 5"],
    ),
    (
        "mde-negative",
        _replace("minimum_detectable_effect: 0.01", "minimum_detectable_effect: -0.01"),
        13,
        "experiment.minimum_detectable_effect",
        ["must be more than 0"],
    ),
    (
        "guardrail",
        _replace("{metric: error_rate, tolerance: 0.002}", "{metric: eror_rate, tolerance: 0.002}"),
        14,
        "experiment.guardrails[0].metric",
        ["unknown metric 'eror_rate'", "did you mean 'error_rate'?"],
    ),
    (
        "max-duration",
        _replace("max_duration: 14d", "max_duration: 2 weeks"),
        15,
        "experiment.max_duration",
        ["invalid duration '2 weeks'"],
    ),
    (
        "unknown-key",
        _replace("allocation: 50", "allocation: 50\n  alocation: 50"),
        8,
        "experiment.alocation",
        ["unknown field"],
    ),
]


@pytest.mark.parametrize(("text", "line", "field", "fragments"), [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_every_bad_field_is_one_line(tmp_path: Path, text: str, line: int, field: str, fragments: list[str]) -> None:
    with pytest.raises(SpecError) as info:
        _load(tmp_path, text)
    err = info.value
    rendered = err.line()
    assert "\n" not in rendered
    assert err.field == field, rendered
    assert err.lineno == line, rendered
    for fragment in fragments:
        assert fragment in rendered, f"{fragment!r} not in {rendered!r}"
