"""Experiment statistics on fixed data, against independent implementations (scipy, statsmodels) and derivations.

scipy and statsmodels are imported inside the tests that use them: at module level every
xdist worker would pay for the import at collection (seconds each on a busy 2-core machine).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from shiploop.analysis.experiment import (
    MIN_UNITS,
    ExperimentDecision,
    Lift,
    UnitSums,
    confidence_half_width,
    count_ratio_lift,
    decide,
    estimate_lift,
    mean_unit_variance,
    mixture_constant,
    plan_experiment,
    sample_ratio_p,
    tau_for_mde,
)

RNG_SEED = 20261128


def revenue(rng: np.random.Generator, n: int, rate: float) -> np.ndarray:
    return (rng.random(n) < rate) * rng.lognormal(3.0, 1.0, n)


# -- fixed-horizon numbers against statsmodels ------------------------------------------------


@pytest.mark.parametrize(
    ("baseline", "mde", "allocation"),
    [(0.1, 0.01, 50), (0.02, 0.005, 50), (0.3, -0.03, 50), (0.1, 0.02, 20), (0.05, 0.01, 80)],
)
def test_fixed_horizon_sample_size_matches_statsmodels(baseline: float, mde: float, allocation: float) -> None:
    from statsmodels.stats.power import normal_power_het
    from statsmodels.stats.proportion import power_proportions_2indep, samplesize_proportions_2indep_onetail

    plan = plan_experiment(baseline, mde, units_per_second=10.0, allocation_percent=allocation)
    a = allocation / 100.0
    n_t, n_c = plan.fixed_units * a, plan.fixed_units * (1.0 - a)
    p_t = baseline + mde
    # statsmodels' generic normal power with the unpooled standard deviation (the test the CS inverts):
    # power 0.8 at our N, and not at 1% less.
    sd = math.sqrt(p_t * (1 - p_t) / a + baseline * (1 - baseline) / (1 - a))
    assert normal_power_het(abs(mde), plan.fixed_units, 0.05, std_null=sd, std_alternative=sd) == pytest.approx(
        0.8, abs=2e-4
    )
    assert normal_power_het(abs(mde), 0.99 * plan.fixed_units, 0.05, std_null=sd, std_alternative=sd) < 0.8
    # statsmodels' two-proportion functions use the pooled variance under the null; prop1 = treatment,
    # ratio = nobs2 / nobs1. The same within 1% at a 50/50 split, within 10% at 20/80.
    ratio = (1.0 - a) / a
    power = power_proportions_2indep(mde, baseline, n_t, ratio=ratio, alpha=0.05).power
    nobs1 = samplesize_proportions_2indep_onetail(mde, baseline, 0.8, ratio=ratio, alpha=0.05)
    close = 0.01 if allocation == 50 else 0.1
    assert plan.fixed_units == pytest.approx(nobs1 / a, rel=close)
    assert power == pytest.approx(0.8, abs=0.005 if allocation == 50 else 0.05)
    assert n_c == pytest.approx(plan.fixed_units * (1 - a))
    assert plan.fixed_seconds == pytest.approx(plan.fixed_units / 10.0)


def test_standard_error_is_welchs() -> None:
    from scipy import stats

    rng = np.random.default_rng(RNG_SEED)
    control, treatment = revenue(rng, 3000, 0.05), revenue(rng, 2000, 0.06)
    lift = estimate_lift(UnitSums.of_values(control), UnitSums.of_values(treatment))
    welch = stats.ttest_ind(treatment, control, equal_var=False)
    assert lift.absolute == pytest.approx(treatment.mean() - control.mean())
    assert lift.absolute / lift.standard_error == pytest.approx(welch.statistic, rel=1e-9)
    # The confidence sequence is wider than the fixed-horizon Welch interval at every n: the price of peeking.
    ci = welch.confidence_interval(0.95)
    assert lift.interval[0] < ci.low and lift.interval[1] > ci.high
    assert lift.chance_to_beat == pytest.approx(stats.norm.cdf(welch.statistic), rel=1e-9)


def test_conversion_variance_is_never_below_the_conservative_one() -> None:
    # No conversions yet: variance p̃(1-p̃) with p̃ = 1/(n+2), not 0 (which would give a zero-width interval).
    assert mean_unit_variance(100, 0.0, 0.0, True) == pytest.approx((1 / 102) * (101 / 102))
    assert mean_unit_variance(100, 0.0, 0.0, False) == 0.0
    # With data the usual sample variance, n/(n-1) p̂q̂, once it is the larger.
    assert mean_unit_variance(1000, 500.0, 500.0, True) == pytest.approx(0.25 * 1000 / 999)


# -- the confidence sequence ------------------------------------------------------------------


def test_mixture_constant_is_the_exact_optimum() -> None:
    from scipy.special import lambertw

    # Waudby-Smith et al.'s exact optimiser, with scipy's Lambert W; and it is the minimum of the width.
    assert mixture_constant(0.05) == pytest.approx(-lambertw(-(0.05**2) / math.e, -1).real - 1.0, rel=1e-10)
    width = [confidence_half_width(1.0, math.sqrt(r), 0.05) for r in (0.8 * 8.21, 8.21, 1.25 * 8.21)]
    assert width[1] < width[0] and width[1] < width[2]


def test_boundary_matches_the_published_conjugate_mixture_margin() -> None:
    # drconfseq's std_conjmix_margin (Waudby-Smith et al.'s code), for the mean of t unit-variance
    # observations: sqrt(2 (t ρ² + 1) / (t² ρ²) · log(sqrt(t ρ² + 1) / α)). Ours at I = t, τ = ρ.
    for t, rho2, alpha in [(10, 0.1, 0.05), (1000, 0.01, 0.05), (10**6, 1e-5, 0.01)]:
        published = math.sqrt(2 * (t * rho2 + 1) / (t * t * rho2) * math.log(math.sqrt(t * rho2 + 1) / alpha))
        assert confidence_half_width(float(t), math.sqrt(rho2), alpha) == pytest.approx(published, rel=1e-12)


def test_boundary_is_where_the_mixture_likelihood_ratio_reaches_one_over_alpha() -> None:
    from scipy import integrate, stats

    # Direct numeric re-derivation: integrate the Gaussian likelihood ratio over θ ~ N(0, τ²) at the boundary.
    info, tau, alpha = 2500.0, 0.03, 0.05
    h = confidence_half_width(info, tau, alpha)
    s = info * h  # the score I (d̂ - δ) at the boundary

    def ratio(theta: float) -> float:
        return math.exp(theta * s - info * theta * theta / 2.0) * stats.norm.pdf(theta, scale=tau)

    value, _ = integrate.quad(ratio, -1.0, 1.0, points=[0.0, h], limit=200)
    assert value == pytest.approx(1.0 / alpha, rel=1e-6)


def test_tau_is_about_the_mde() -> None:
    assert tau_for_mde(0.01) == pytest.approx(0.01 * math.sqrt(mixture_constant(0.05)) / (1.959964 + 0.841621))
    assert 1.0 < tau_for_mde(0.01) / 0.01 < 1.05


def test_interval_is_infinite_until_both_variants_have_min_units() -> None:
    few = UnitSums.of_values([1.0] * 10 + [0.0] * (MIN_UNITS - 11))
    many = UnitSums.of_values([1.0] * 100 + [0.0] * 900)
    lift = estimate_lift(few, many, mde=0.01)
    assert lift.interval == (-math.inf, math.inf) and lift.chance_to_beat is None
    assert lift.as_dict()["interval"] == [None, None]
    grown = estimate_lift(few + UnitSums.of_values([0.0]), many, mde=0.01)
    assert math.isfinite(grown.interval[0]) and grown.interval[0] < grown.absolute < grown.interval[1]


def test_relative_interval_by_the_delta_method() -> None:
    c = UnitSums.of_values([1.0] * 1000 + [0.0] * 9000)
    t = UnitSums.of_values([1.0] * 1200 + [0.0] * 8800)
    lift = estimate_lift(c, t, mde=0.01)
    assert lift.relative == pytest.approx(0.2)
    assert lift.relative_interval is not None
    lo, hi = lift.relative_interval
    assert lo < 0.2 < hi
    # Excluding zero on the absolute and the relative scale agree here (both well above).
    assert (lo > 0) == (lift.interval[0] > 0) == True  # noqa: E712


# -- ratio metrics: the delta method ----------------------------------------------------------


def test_ratio_variance_matches_the_jackknife() -> None:
    # An independent estimate of Var(Σx/Σd): leave-one-unit-out jackknife on the same fixed data.
    rng = np.random.default_rng(RNG_SEED)
    d = rng.poisson(3.0, 4000) + 1.0  # visits per unit
    x = rng.binomial(d.astype(int), 0.2).astype(float)  # checkouts per unit
    sums = UnitSums.of_ratios(zip(x, d, strict=True))
    assert sums.value == pytest.approx(x.sum() / d.sum())
    loo = (x.sum() - x) / (d.sum() - d)
    n = len(x)
    jackknife = (n - 1) / n * np.sum((loo - loo.mean()) ** 2)
    assert sums.variance_of_value() == pytest.approx(jackknife, rel=0.01)


def test_ratio_lift_covers_and_differs_from_the_naive_request_level_one() -> None:
    rng = np.random.default_rng(RNG_SEED + 1)

    def units(n: int, p: float) -> tuple[UnitSums, float, float]:
        d = rng.poisson(4.0, n) + 1.0
        # Units differ in their own rate: requests of one unit are correlated.
        own = rng.beta(2.0, 2.0 * (1 - p) / p, n)
        x = rng.binomial(d.astype(int), own).astype(float)
        return UnitSums.of_ratios(zip(x, d, strict=True)), float(x.sum()), float(d.sum())

    (c, cx, cd), (t, tx, td) = units(5000, 0.2), units(5000, 0.2)
    unit_level = estimate_lift(c, t, mde=0.02)
    request_level = count_ratio_lift(cx, cd, tx, td)
    assert unit_level.absolute == pytest.approx(request_level.absolute)
    # Correlated requests: the unit-level standard error is the honest, larger one.
    assert unit_level.standard_error > 1.1 * request_level.standard_error


# -- SRM, decision, plan ----------------------------------------------------------------------


def test_sample_ratio_p() -> None:
    assert sample_ratio_p(5000, 5000, 50) == 1.0
    assert sample_ratio_p(9000, 1000, 10) == 1.0  # the allocation, not 50/50, is the null
    assert sample_ratio_p(5400, 4600, 50) < 0.001
    assert sample_ratio_p(5000, 5000, 10) < 1e-10
    with pytest.raises(ValueError):
        sample_ratio_p(10, 10, 100)


def lift_with(interval: tuple[float, float], absolute: float = 0.0) -> Lift:
    return Lift(0.1, 0.1 + absolute, absolute, absolute / 0.1, interval, None, 0.5)


DAY = 86400.0


@pytest.mark.parametrize(
    ("interval", "harm", "srm_p", "elapsed", "decision", "words"),
    [
        ((0.001, 0.02), None, 0.5, 10.0, ExperimentDecision.SHIP, "raises the primary metric"),
        ((0.001, 0.02), "error_rate: 0.5% against 0.1%", 0.5, 10.0, ExperimentDecision.STOP, "error_rate"),
        ((0.001, 0.02), None, 1e-5, 10.0, ExperimentDecision.HOLD, "did not split"),
        ((-0.05, -0.011), None, 0.5, 10.0, ExperimentDecision.STOP, "lowers the primary metric"),
        ((-0.05, -0.009), None, 0.5, 10.0, ExperimentDecision.CONTINUE, "Continue"),
        ((-0.01, 0.01), None, None, 14 * DAY, ExperimentDecision.INCONCLUSIVE, "maximum duration"),
        ((-0.01, 0.01), None, 0.5, 10.0, ExperimentDecision.CONTINUE, "Continue"),
        ((-math.inf, math.inf), None, None, 10.0, ExperimentDecision.CONTINUE, "Continue"),
    ],
)
def test_decide(
    interval: tuple[float, float],
    harm: str | None,
    srm_p: float | None,
    elapsed: float,
    decision: ExperimentDecision,
    words: str,
) -> None:
    verdict = decide(
        lift_with(interval, sum(interval) / 2 if math.isfinite(interval[0]) else 0.0),
        mde=0.01,
        guardrail_harm=harm,
        srm_p=srm_p,
        elapsed_s=elapsed,
        max_duration_s=14 * DAY,
    )
    assert verdict.decision == decision
    assert words in verdict.reason and "\n" not in verdict.reason and "inf" not in verdict.reason


def test_sequential_plan_is_what_its_docstring_says() -> None:
    from scipy import stats

    plan = plan_experiment(0.1, 0.01, units_per_second=20.0, allocation_percent=50)
    # The price of looking: between 1.5 and 2.5 times the fixed horizon at α = 0.05, power 0.8.
    assert 1.5 * plan.fixed_units < plan.sequential_units < 2.5 * plan.fixed_units
    assert plan.sequential_seconds == pytest.approx(plan.sequential_units / 20.0)
    # At N the CS, looked at once, excludes 0 with probability 0.8 when the lift is the MDE; not at N - 1%.
    j = 1.0 / (0.1 * 0.9 / 0.5 + 0.11 * 0.89 / 0.5)
    tau = tau_for_mde(0.01)

    def power(n: float) -> float:
        info = n * j
        return float(stats.norm.cdf((0.01 - confidence_half_width(info, tau, 0.05)) * math.sqrt(info)))

    assert power(plan.sequential_units) == pytest.approx(0.8, abs=1e-3)
    assert power(0.99 * plan.sequential_units) < 0.8
    # No traffic yet: forever, not a division error.
    assert math.isinf(plan_experiment(0.1, 0.01, 0.0, 50).fixed_seconds)


def test_plan_rejects_impossible_inputs() -> None:
    for baseline, mde, allocation in [(0.0, 0.01, 50), (0.5, 0.6, 50), (0.1, 0.0, 50), (0.1, 0.01, 0)]:
        with pytest.raises(ValueError):
            plan_experiment(baseline, mde, 10.0, allocation)


# -- CUPED --------------------------------------------------------------------------------------


def pre_and_post(rng: np.random.Generator, n: int, lift: float) -> tuple[np.ndarray, np.ndarray]:
    """Units' spend before (y) and during (x) the experiment, correlated through the unit's own level."""
    level = rng.lognormal(2.0, 0.8, n)
    y = rng.poisson(level).astype(float)
    x = rng.poisson(level * (1.0 + lift)).astype(float)
    return x, y


def test_cuped_is_the_regression_adjusted_estimate() -> None:
    from statsmodels.regression.linear_model import OLS

    rng = np.random.default_rng(RNG_SEED + 2)
    (xc, yc), (xt, yt) = pre_and_post(rng, 3000, 0.0), pre_and_post(rng, 2000, 0.05)
    control = UnitSums.of_values_with_pre(zip(xc, yc, strict=True))
    treatment = UnitSums.of_values_with_pre(zip(xt, yt, strict=True))
    lift = estimate_lift(control, treatment, mde=0.5)
    design = np.column_stack([np.ones(5000), np.r_[np.zeros(3000), np.ones(2000)], np.r_[yc, yt]])
    ols = OLS(np.r_[xc, xt], design).fit(cov_type="HC1")
    assert lift.absolute == pytest.approx(ols.params[1], rel=1e-9)
    assert lift.standard_error == pytest.approx(ols.bse[1], rel=0.02)
    # The noise removed is about ρ² of the plain estimate's variance.
    rho = np.corrcoef(np.r_[xc, xt], np.r_[yc, yt])[0, 1]
    assert lift.variance_reduction == pytest.approx(rho**2, abs=0.03)
    plain = estimate_lift(UnitSums.of_values(xc), UnitSums.of_values(xt), mde=0.5)
    assert lift.interval[1] - lift.interval[0] < 0.8 * (plain.interval[1] - plain.interval[0])
    assert plain.variance_reduction is None and lift.as_dict()["variance_reduction"] == lift.variance_reduction


def test_cuped_interval_covers_throughout_an_a_a_experiment() -> None:
    rng = np.random.default_rng(RNG_SEED + 3)
    misses = 0
    runs, n = 200, 4000
    for _ in range(runs):
        x, y = pre_and_post(rng, n, 0.0)
        treated = rng.random(n) < 0.5
        sums = {}
        for arm, mask in (("c", ~treated), ("t", treated)):
            m = mask.astype(float)
            sums[arm] = [np.cumsum(v * m) for v in (m, x, x * x, y, y * y, x * y)]
        for k in range(99, n, 100):
            c, t = (
                UnitSums(int(s[0][k]), s[1][k], s[2][k], y=s[3][k], yy=s[4][k], xy=s[5][k], covariate=True)
                for s in (sums["c"], sums["t"])
            )
            lo, hi = estimate_lift(c, t, mde=0.5).interval
            if not lo <= 0.0 <= hi:
                misses += 1
                break
    assert misses / runs <= 0.05
