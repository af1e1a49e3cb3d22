"""Envoy's rules, checked before anything reaches the store: header names and values, RE2 regexes, durations."""

from __future__ import annotations

from pathlib import Path

import pytest

from shiploop.errors import Invalid, ShiploopError
from shiploop.spec import envoy_rules, load_service


@pytest.mark.parametrize("name", ["", "x user", "x-user\n", "x:user", ":path", "x(y)", "é", "x" * 257, "a\0"])
def test_header_names_outside_rfc_9110_tokens_are_refused(name: str):
    with pytest.raises(Invalid):
        envoy_rules.header_name(name)


@pytest.mark.parametrize("name", ["x-user", "X-Tenant", "x!#$%&'*+.^_`|~1"])
def test_header_names_are_tokens_lowercased(name: str):
    assert envoy_rules.header_name(name) == name.lower()


@pytest.mark.parametrize("value", ["a\r\nx-evil: 1", "a\nb", "a\0", "\x7f", " a", "a\t", "v" * 4097])
def test_header_values_that_split_headers_or_never_match_are_refused(value: str):
    with pytest.raises(Invalid):
        envoy_rules.header_value(value)


@pytest.mark.parametrize("value", ["ana", "", "a b", "é", "a\tb"])
def test_header_values_http_can_carry_are_kept(value: str):
    assert envoy_rules.header_value(value) == value


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        ("^/look(?=ahead).*", "invalid perl operator"),  # Python's re accepts it, RE2 (Envoy) does not
        (r"^/(a)\1$", "invalid escape"),
        ("^/(" + "|".join(f"item{i}[0-9]+" for i in range(40)) + ")$", "program size"),
        ("", "empty"),
    ],
)
def test_regexes_are_judged_as_envoy_judges_them(pattern: str, why: str):
    with pytest.raises(Invalid) as refused:
        envoy_rules.regex(pattern)
    assert why in refused.value.line()


def test_a_plain_regex_passes():
    assert envoy_rules.regex("^/items/[0-9]+$") == "^/items/[0-9]+$"


@pytest.mark.parametrize("seconds", [0.0, 0.0004, 9_223_372_036.0, 1e10, 1e300])
def test_durations_outside_envoys_range_are_refused(seconds: float):
    with pytest.raises(Invalid):
        envoy_rules.duration(seconds)


@pytest.mark.parametrize(
    ("yaml_tail", "fragment"),
    [
        ("  - regex: '^/look(?=ahead).*'\n", "invalid perl operator"),
        ("  - prefix: /a/\n    timeout: 1000000000000s\n", "outside what Envoy accepts"),
        ("  - prefix: /a/\n    headers: {x-user: \"a\\nb\"}\n", "invalid header value"),
        ("  - prefix: /a/\n    retries: {per_try_timeout: 0.0001}\n", "outside what Envoy accepts"),
        ("outlier_detection: {interval: 20000000000}\n", "outside what Envoy accepts"),
    ],
)
def test_service_yaml_holds_to_envoys_rules(tmp_path: Path, yaml_tail: str, fragment: str):
    routes = yaml_tail if yaml_tail.startswith("  ") else "  - prefix: /svc/\n" + yaml_tail
    path = tmp_path / "service.yaml"
    path.write_text("name: svc\nrun:\n  command: [python, app.py]\nroutes:\n" + routes)
    with pytest.raises(ShiploopError) as refused:
        load_service(path)
    assert fragment in refused.value.line()
