"""The rollout judge's guardrails on per-step strata: shared changes cancel, no baseline no test, frozen latency."""

from __future__ import annotations

import math

from shiploop.rollout.judge import guardrail_results, latency_thresholds, limit_breaches
from shiploop.rollout.readings import Reading, Stratum
from shiploop.spec import RolloutPolicy

BOUNDS = (1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 75.0, 100.0)
POLICY = RolloutPolicy()


def lognormal_buckets(n: int, median_ms: float, sigma: float = 0.6) -> tuple[tuple[float, int], ...]:
    """Expected cumulative counts of n requests, as Envoy's histogram would hold them."""
    out = []
    for b in BOUNDS:
        share = 0.5 * math.erfc(-(math.log(b / median_ms) / sigma) / math.sqrt(2.0))
        out.append((b, round(n * share)))
    return tuple(out)


def arm(requests: int, error_rate: float, median_ms: float = 3.0) -> Reading:
    return Reading(0.0, requests, round(requests * error_rate), lognormal_buckets(requests, median_ms))


def by_name(strata: list[Stratum], policy: RolloutPolicy = POLICY) -> dict[str, object]:
    return {g.name: g.result for g in guardrail_results(policy, strata)}


def test_a_shared_incident_while_the_split_moves_is_not_harm() -> None:
    # 60 s at 5% with both versions at 0.1%; then 60 s at 50% with both at 2%.
    strata = [
        Stratum(0, 5, arm(300, 0.001), arm(5_700, 0.001)),
        Stratum(1, 50, arm(3_000, 0.02), arm(3_000, 0.02)),
    ]
    errors = by_name(strata)["error_rate"]
    assert not errors.harmful and errors.strata == 2 and abs(errors.estimate) < 0.001
    # Pooled since the start, the same counts look like a difference (the bug of issue 7).
    pooled = [Stratum(0, 50, arm(3_300, 62 / 3_300), arm(8_700, 66 / 8_700))]
    assert by_name(pooled)["error_rate"].harmful


def test_the_100_percent_step_gives_the_guardrails_no_evidence() -> None:
    split = Stratum(0, 50, arm(3_000, 0.001), arm(3_000, 0.001))
    full = Stratum(1, 100, arm(6_000, 0.05), arm(3, 0.0))  # a few baseline requests in flight
    assert by_name([split, full]) == by_name([split])
    # The limits still watch the candidate alone.
    assert limit_breaches(POLICY.limits, Reading(0.0, 200, 120)) != []


def test_latency_threshold_is_frozen_from_the_step_before() -> None:
    first = Stratum(0, 5, arm(300, 0.0), arm(5_700, 0.0))
    assert latency_thresholds([first], 0.95) == [10.0]  # its own baseline so far
    # Everything 3x slower on both versions: the shares above 10 ms rise alike.
    slow_both = Stratum(1, 25, arm(1_500, 0.0, 9.0), arm(4_500, 0.0, 9.0))
    assert latency_thresholds([first, slow_both], 0.95) == [10.0, 10.0]
    assert not by_name([first, slow_both])["latency_p95"].harmful
    # The candidate alone 2x slower on every request is caught against the frozen 10 ms.
    slower = Stratum(1, 25, arm(1_500, 0.0, 6.0), arm(4_500, 0.0))
    assert by_name([first, slower])["latency_p95"].harmful


def test_relative_latency_tolerance() -> None:
    policy = RolloutPolicy(guardrails=[{"metric": "latency", "quantile": 0.95, "tolerance": 0.0, "relative": 1.0}])
    first = Stratum(0, 5, arm(300, 0.0), arm(5_700, 0.0))
    # 2x slower: with p95 allowed to double, not harm; with no relative slack, harm.
    slower = Stratum(1, 25, arm(1_500, 0.0, 6.0), arm(4_500, 0.0))
    assert not by_name([first, slower], policy)["latency_p95"].harmful
    strict = RolloutPolicy(guardrails=[{"metric": "latency", "quantile": 0.95, "tolerance": 0.0}])
    assert by_name([first, slower], strict)["latency_p95"].harmful
    assert "2x" in guardrail_results(policy, [first, slower])[0].detail
