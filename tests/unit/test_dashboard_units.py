"""The dashboard's pure parts: traffic bins from sampler snapshots, one-time codes and sessions."""

from __future__ import annotations

from shiploop.daemon.dashboard import CODE_TTL_S, Sessions, trail_point
from shiploop.metrics.envoy_source import VersionTraffic
from shiploop.metrics.sampler import VersionSnapshot
from shiploop.server.traffic_series import binned


def snap(ts: float, requests: int, errors: int, fast: int, slow: int) -> VersionSnapshot:
    # buckets: (upper bound ms, cumulative count)
    return VersionSnapshot(
        ts, VersionTraffic(requests, errors, latency_buckets=((10.0, fast), (500.0, fast + slow))), {}
    )


def test_bins_count_the_difference_across_each_bin():
    history = [snap(t, 10 * t, t, 9 * t, t) for t in range(0, 31)]  # 10 req/s, 10% 5xx, 10% slow
    points = binned(history, now=30.0, span_s=30.0, bin_s=10.0)
    assert [p["t"] for p in points] == [10.0, 20.0, 30.0]
    for p in points:
        assert p["rps"] == 10.0 and p["error_rate"] == 0.1 and p["p95_ms"] == 500.0
    # The first bin of a version counts from its first reading, over the seconds since.
    young = binned(history[15:], now=30.0, span_s=30.0, bin_s=10.0)
    assert [(p["t"], p["rps"]) for p in young] == [(20.0, 10.0), (30.0, 10.0)]


def test_a_bin_without_requests_has_no_rates_and_a_gap_is_skipped():
    history = [snap(0, 0, 0, 0, 0), snap(10, 0, 0, 0, 0), snap(30, 100, 0, 100, 0)]
    points = binned(history, now=30.0, span_s=30.0, bin_s=10.0)
    assert points[0] == {"t": 10.0, "requests": 0, "rps": 0.0, "error_rate": None, "p95_ms": None}
    # 20..30 has no reading at 20: it counts from the last one, at 10, over the 20 s between.
    assert points[-1]["t"] == 30.0 and points[-1]["rps"] == 5.0
    assert binned([], 30.0, 30.0, 10.0) == []


def test_a_login_code_opens_one_session_once_and_expires():
    now = [1000.0]
    s = Sessions(clock=lambda: now[0])
    code = s.issue_code()
    session = s.redeem(code)
    assert session is not None and s.csrf(session)
    assert s.redeem(code) is None  # used
    late = s.issue_code()
    now[0] += CODE_TTL_S + 1
    assert s.redeem(late) is None  # expired
    assert s.csrf("made-up") is None and s.csrf(None) is None


def test_trail_point_keeps_estimate_interval_and_tolerance():
    g = {
        "name": "error_rate",
        "estimate": 0.01,
        "lower_bound": -0.002,
        "upper_bound": 0.03,
        "tolerance": 0.005,
        "verdict": "watching",
    }
    p = trail_point({"at": 5.0, "weight": 20, "step": {"index": 1}, "guardrails": [g]})
    assert p == {
        "at": 5.0,
        "step": 1,
        "weight": 20,
        "guardrails": [
            {
                "name": "error_rate",
                "estimate": 0.01,
                "lower": -0.002,
                "upper": 0.03,
                "tolerance": 0.005,
                "verdict": "watching",
            }
        ],
    }
    assert trail_point({"at": 5.0, "guardrails": []}) is None
