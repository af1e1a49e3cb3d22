"""Unit tests for shiploop.analysis: the harm test, latency, SRM, step rules, fixed thresholds."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from shiploop.analysis import (
    Counts,
    FixedThresholdPolicy,
    GuardrailResult,
    IntervalStats,
    StepInputs,
    boundary,
    chi2_sf,
    default_tau2,
    evaluate_step,
    harm_test,
    latency_exceedance,
    log_mixture,
    log_one_sided,
    per_guardrail_alpha,
    poisson_upper,
    srm_test,
    stratified_harm_test,
)
from shiploop.analysis.srm import gamma_q

# --- harm test ---------------------------------------------------------------


def test_counts_reject_impossible_values() -> None:
    with pytest.raises(ValueError):
        Counts(5, 3)
    with pytest.raises(ValueError):
        Counts(-1, 3)


def test_identical_arms_are_not_harmful() -> None:
    r = harm_test(Counts(10, 10_000), Counts(10, 10_000), tolerance=0.0, alpha=0.05)
    assert r.estimate == 0.0
    assert not r.harmful
    assert r.lower_bound < 0.0 < r.upper_bound
    assert r.log_lambda < r.threshold


def test_one_sided_only_the_candidate_being_worse_is_harm() -> None:
    a, b = Counts(60, 1000), Counts(20, 1000)
    worse = harm_test(a, b, tolerance=0.0, alpha=0.05)
    better = harm_test(b, a, tolerance=0.0, alpha=0.05)
    assert math.isclose(worse.estimate, -better.estimate)
    assert worse.harmful and not better.harmful
    # The one-sided mixture puts no weight on the candidate being better: no evidence there.
    assert better.log_lambda < 0.0 < worse.threshold < worse.log_lambda


def test_clear_regression_is_harmful() -> None:
    r = harm_test(Counts(48, 1000), Counts(10, 10_000), tolerance=0.002, alpha=0.05)
    assert r.harmful
    assert r.lower_bound > 0.002
    assert r.log_lambda >= r.threshold == pytest.approx(math.log(20))
    assert not r.noninferior


def test_one_early_error_does_not_roll_back() -> None:
    # The zero-failure corner: baseline has none yet, candidate's first requests include one error.
    for candidate in (Counts(1, 1), Counts(1, 3), Counts(2, 3), Counts(3, 3)):
        r = harm_test(candidate, Counts(0, 57), tolerance=0.002, alpha=0.05)
        assert not r.harmful, candidate
        assert not r.enough_data
    # Both arms error-free: V would be 0 with the plug-in estimate; here it is finite.
    r = harm_test(Counts(0, 3), Counts(0, 57), tolerance=0.0, alpha=0.05)
    assert math.isfinite(r.log_lambda) and not r.harmful


def test_empty_arm_is_inconclusive_and_json_safe() -> None:
    r = harm_test(Counts(0, 0), Counts(3, 500), tolerance=0.002, alpha=0.05)
    assert not r.harmful and not r.noninferior and not r.enough_data
    json.dumps(r.as_dict(), allow_nan=False)


def test_noninferior_with_plenty_of_clean_data() -> None:
    r = harm_test(Counts(50, 100_000), Counts(100, 200_000), tolerance=0.002, alpha=0.05)
    assert r.enough_data and r.noninferior and not r.harmful
    assert r.upper_bound < 0.002


def test_lower_bound_is_where_the_harm_test_rejects() -> None:
    c, b = Counts(30, 2000), Counts(50, 8000)
    r = harm_test(c, b, tolerance=0.0, alpha=0.05)
    at_lower = harm_test(c, b, tolerance=r.lower_bound, alpha=0.05, tau2=r.mixture)
    assert at_lower.log_lambda == pytest.approx(r.threshold, abs=1e-6)
    assert r.lower_bound < r.estimate < r.upper_bound


def test_one_sided_mixture_is_the_half_normal_integral() -> None:
    # Λ(S, I) = ∫_0^∞ exp(θS - θ²I/2) 2 N(θ; 0, τ²) dθ, by the trapezoid rule.
    tau2 = 1e-4
    for s, info in ((50.0, 1e4), (-30.0, 1e4), (400.0, 2e5), (0.0, 5e3)):
        tau = math.sqrt(tau2)
        grid = [i * 8 * tau / 20_000 for i in range(20_001)]
        f = [
            math.exp(t * s - t * t * info / 2) * 2 * math.exp(-t * t / (2 * tau2)) / (tau * math.sqrt(2 * math.pi))
            for t in grid
        ]
        integral = sum((f[i] + f[i + 1]) / 2 * (grid[i + 1] - grid[i]) for i in range(len(grid) - 1))
        assert log_one_sided(s, info, tau2) == pytest.approx(math.log(integral), abs=1e-4)
    # Far in the tails it stays finite.
    assert math.isfinite(float(log_one_sided(-1e7, 1e4, tau2)))
    assert boundary(1e4, (tau2,), 0.05) > 0.0
    assert log_mixture(boundary(1e4, (tau2, 0.04), 0.05), 1e4, (tau2, 0.04)) == pytest.approx(math.log(20))


def test_stratification_cancels_a_shared_change_of_rate() -> None:
    # Both versions at 0.1% while the candidate had 5%, both at 2% (an incident) while it had 50%.
    step1 = (Counts(2, 1_500), Counts(29, 28_500))
    step2 = (Counts(300, 15_000), Counts(300, 15_000))
    pooled = harm_test(Counts(302, 16_500), Counts(329, 43_500), tolerance=0.002, alpha=0.05)
    assert pooled.harmful  # Simpson's paradox: the pooled candidate saw more of the incident
    stratified = stratified_harm_test([step1, step2], tolerance=0.002, alpha=0.05)
    assert not stratified.harmful and abs(stratified.estimate) < 0.001 and stratified.strata == 2
    # The same numbers with the candidate truly worse in the second step are caught.
    assert stratified_harm_test([step1, (Counts(600, 15_000), step2[1])], 0.002, 0.05).harmful


def test_a_stratum_without_baseline_traffic_carries_no_evidence() -> None:
    split = (Counts(10, 5_000), Counts(10, 5_000))
    alone = (Counts(4_000, 6_000), Counts(0, 0))
    with_alone = stratified_harm_test([split, alone], 0.002, 0.05)
    assert with_alone == stratified_harm_test([split], 0.002, 0.05)
    assert not with_alone.harmful


def test_few_events_widen_the_noninferiority_bound() -> None:
    assert poisson_upper(0, 0.05) == pytest.approx(-math.log(0.05), rel=1e-6)
    assert poisson_upper(5, 0.05) == pytest.approx(10.513, abs=1e-3)
    # 5 events in 2,982: the plug-in variance would claim a bound near +0.0037.
    r = harm_test(Counts(5, 2_982), Counts(3, 3_000), tolerance=0.004, alpha=0.05)
    assert r.upper_bound > 0.0045 and not r.noninferior


def test_noninferiority_is_not_reached_falsely_at_the_boundary_with_few_events() -> None:
    # The candidate worse by exactly the tolerance (0.1% vs 0.3%), looked at after 1,000, 3,000
    # and 10,000 requests per arm: "noninferior" would be a false claim every time.
    rng = np.random.default_rng(1)
    runs, looks, hits = 1000, (1000, 3000, 10_000), 0
    for _ in range(runs):
        x_c = x_b = before = 0
        for n in looks:
            x_c += int(rng.binomial(n - before, 0.003))
            x_b += int(rng.binomial(n - before, 0.001))
            before = n
            if harm_test(Counts(x_c, n), Counts(x_b, n), 0.002, 0.025).noninferior:
                hits += 1
                break
    assert hits / runs <= 0.025


def test_default_tau2_and_alpha_split() -> None:
    assert default_tau2(0.002) == pytest.approx(1e-4)
    assert default_tau2(0.05) == pytest.approx(0.0025)
    assert harm_test(Counts(1, 100), Counts(1, 100), 0.002, 0.05).tau2 == pytest.approx(1e-4)
    assert per_guardrail_alpha(0.05, 2) == pytest.approx(0.025)
    assert per_guardrail_alpha(0.05, 0) == pytest.approx(0.05)


# --- latency -------------------------------------------------------------------

BASELINE = [(10.0, 50), (25.0, 90), (50.0, 99), (100.0, 100)]


def test_latency_threshold_and_slow_counts() -> None:
    candidate = [(10.0, 30), (25.0, 60), (50.0, 80), (100.0, 95)]
    threshold, slow_c, slow_b = latency_exceedance(BASELINE, candidate, 0.99, candidate_total=100)
    assert threshold == 50.0
    assert slow_b == Counts(1, 100)
    assert slow_c == Counts(20, 100)  # 15 between 50 and 100 ms, 5 in the overflow bucket


def test_latency_lower_quantile_and_overflow() -> None:
    threshold, _, slow_b = latency_exceedance(BASELINE, BASELINE, 0.9)
    assert threshold == 25.0 and slow_b == Counts(10, 100)
    # The baseline never reaches the quantile below the last bound: use the last bound.
    threshold, _, slow_b = latency_exceedance([(10.0, 5), (20.0, 10)], [], 0.99, baseline_total=100)
    assert threshold == 20.0 and slow_b == Counts(90, 100)


def test_latency_empty_histograms() -> None:
    assert latency_exceedance([], [], 0.99) == (None, Counts(0, 0), Counts(0, 0))
    assert latency_exceedance([(10.0, 0)], [(10.0, 4)], 0.99) == (None, Counts(0, 4), Counts(0, 0))
    threshold, slow_c, _ = latency_exceedance(BASELINE, [], 0.99)
    assert threshold == 50.0 and slow_c == Counts(0, 0)


# --- SRM -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("chi2", "df", "p"),
    [(10.83, 1, 0.001), (3.841, 1, 0.05), (5.991, 2, 0.05), (16.266, 3, 0.001), (124.342, 100, 0.05)],
)
def test_chi2_sf_known_values(chi2: float, df: int, p: float) -> None:
    assert chi2_sf(chi2, df) == pytest.approx(p, rel=0.01)


def test_chi2_sf_closed_forms() -> None:
    for x in (0.01, 0.5, 1.0, 2.0, 7.0, 30.0, 80.0):
        assert chi2_sf(x, 1) == pytest.approx(math.erfc(math.sqrt(x / 2)), rel=1e-9, abs=1e-300)
        assert chi2_sf(x, 2) == pytest.approx(math.exp(-x / 2), rel=1e-9, abs=1e-300)
    assert chi2_sf(0.0, 3) == 1.0 and chi2_sf(5.0, 0) == 1.0
    assert gamma_q(3.0, 1e-12) == pytest.approx(1.0)


def test_srm_matching_split() -> None:
    r = srm_test({"stable": 9480, "canary": 520}, {"stable": 95, "canary": 5})
    assert not r.mismatch and r.df == 1 and r.p_value > 0.001


def test_srm_mismatch() -> None:
    # 52/48 of 10,000 (χ² = 16) is not yet enough for a test that may be looked at every second.
    assert not srm_test({"stable": 5200, "canary": 4800}, {"stable": 0.5, "canary": 0.5}).mismatch
    r = srm_test({"stable": 5300, "canary": 4700}, {"stable": 0.5, "canary": 0.5})
    assert r.chi2 == pytest.approx(36.0)
    assert r.mismatch and r.p_value < 0.001 and r.log_bayes_factor > math.log(1000)
    json.dumps(r.as_dict(), allow_nan=False)


def test_srm_zero_weight_versions() -> None:
    ignored = srm_test({"a": 500, "b": 500, "old": 0}, {"a": 1, "b": 1, "old": 0})
    assert not ignored.mismatch and ignored.df == 1
    stray = srm_test({"a": 500, "b": 500, "old": 3}, {"a": 1, "b": 1, "old": 0})
    assert stray.mismatch
    unknown = srm_test({"a": 500, "b": 500, "ghost": 1}, {"a": 1, "b": 1})
    assert unknown.mismatch


def test_srm_no_traffic_or_single_version() -> None:
    assert srm_test({}, {"a": 1, "b": 1}).p_value == 1.0
    single = srm_test({"a": 1000}, {"a": 1})
    assert single.df == 0 and not single.mismatch


# --- step decision ---------------------------------------------------------------

HARM = GuardrailResult("error_rate", harm_test(Counts(48, 1000), Counts(10, 10_000), 0.002, 0.05))
CLEAN = GuardrailResult("error_rate", harm_test(Counts(5, 5000), Counts(10, 10_000), 0.002, 0.05))
CLEAN_LARGE = GuardrailResult("error_rate", harm_test(Counts(50, 100_000), Counts(100, 200_000), 0.002, 0.05))
SRM_BAD = srm_test({"stable": 5300, "canary": 4700}, {"stable": 1, "canary": 1})


def step(**kw: object) -> StepInputs:
    base: dict[str, object] = {
        "elapsed_s": 120.0,
        "min_step_s": 60.0,
        "max_step_s": 600.0,
        "min_samples": 100,
        "candidate_trials": 5000,
    }
    return StepInputs(**(base | kw))  # type: ignore[arg-type]


def test_step_limit_breach_wins() -> None:
    d = evaluate_step(step(limit_breaches=["p99 812 ms > 500 ms"], guardrails=[HARM], srm=SRM_BAD))
    assert (d.action, d.rule) == ("rollback", "limit")
    assert "812 ms" in d.reason


def test_step_harm_before_srm_and_before_min_step() -> None:
    d = evaluate_step(step(guardrails=[CLEAN, HARM], srm=SRM_BAD, elapsed_s=3.0, candidate_trials=5))
    assert (d.action, d.rule) == ("rollback", "harm")
    assert d.reason.startswith("error_rate: candidate 4.8% vs baseline 0.1%, harm bound ")
    assert "> tolerance 0.2% (Λ=" in d.reason and "≥ 20)" in d.reason
    json.dumps(d.evidence, allow_nan=False)


def test_step_srm_holds() -> None:
    d = evaluate_step(step(guardrails=[CLEAN], srm=SRM_BAD, elapsed_s=900.0, data_ok=False))
    assert (d.action, d.rule) == ("hold", "srm")


@pytest.mark.parametrize(("policy", "action"), [("hold", "hold"), ("fail", "rollback"), ("pass", "advance")])
def test_step_no_data_past_max(policy: str, action: str) -> None:
    d = evaluate_step(step(elapsed_s=600.0, candidate_trials=3, on_no_data=policy))
    assert (d.action, d.rule) == (action, "no_data")
    d = evaluate_step(step(elapsed_s=700.0, data_ok=False, on_no_data=policy))
    assert (d.action, d.rule) == (action, "no_data")


@pytest.mark.parametrize(
    ("kw", "rule"),
    [
        ({"elapsed_s": 10.0}, "min_step"),
        ({"candidate_trials": 50}, "min_samples"),
        ({"data_ok": False}, "data_error"),
    ],
)
def test_step_waits(kw: dict[str, object], rule: str) -> None:
    d = evaluate_step(step(guardrails=[CLEAN], **kw))
    assert (d.action, d.rule) == ("wait", rule)


def test_step_noninferiority() -> None:
    d = evaluate_step(step(guardrails=[CLEAN], require_noninferiority=True))
    assert (d.action, d.rule) == ("wait", "noninferiority")
    d = evaluate_step(step(guardrails=[CLEAN], require_noninferiority=True, elapsed_s=600.0))
    assert (d.action, d.rule) == ("hold", "inconclusive")
    d = evaluate_step(step(guardrails=[CLEAN], require_noninferiority=True, elapsed_s=600.0, on_inconclusive="advance"))
    assert (d.action, d.rule) == ("advance", "inconclusive")
    d = evaluate_step(step(guardrails=[CLEAN_LARGE], require_noninferiority=True))
    assert (d.action, d.rule) == ("advance", "pass")


def test_step_advances_when_clean() -> None:
    d = evaluate_step(step(guardrails=[CLEAN]))
    assert (d.action, d.rule) == ("advance", "pass")
    assert d.evidence["guardrails"]["error_rate"]["harmful"] is False
    json.dumps(d.evidence, allow_nan=False)


# --- fixed thresholds ------------------------------------------------------------


def test_fixed_threshold_policy() -> None:
    policy = FixedThresholdPolicy()
    good = IntervalStats(requests=300, errors=1, p99_ms=120.0)
    slow = IntervalStats(requests=300, errors=0, p99_ms=800.0)
    failing = IntervalStats(requests=300, errors=30, p99_ms=120.0)
    idle = IntervalStats(requests=0, errors=0, p99_ms=None)
    assert policy.decide([good]).action == "advance"
    assert policy.decide([good, slow]).action == "hold"
    assert policy.decide([idle]).action == "hold"
    history = [failing, good, slow, failing, idle, failing]
    decision = policy.decide(history)
    assert decision.action == "rollback" and decision.failed_checks == 5
    assert policy.decide(history[:4]).failed_checks == 3
