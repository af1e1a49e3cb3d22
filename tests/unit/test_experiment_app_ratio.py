"""App-counter secondary metrics ({app: NUM/DEN}): a request-level ratio per variant, its lift by the
delta method over the counters' increases (one batch per reading), folded from a fake readings source."""

from __future__ import annotations

import math

import numpy as np
import pytest

from shiploop.analysis.experiment import MIN_UNITS, UnitSums, count_ratio_lift, request_ratio_lift

SEED = 20261128


def batches(rng: np.random.Generator, n: int, rps: float, p: float, items: float = 0.0) -> UnitSums:
    """n readings: d requests each (Poisson), x checkouts among them; with `items`, x counts items per checkout."""
    d = rng.poisson(rps, n).astype(float)
    x = rng.binomial(d.astype(int), p).astype(float)
    if items:
        x = np.array([rng.geometric(1.0 / items, int(k)).sum() for k in x], dtype=float)
    return UnitSums.of_ratios(zip(x, d, strict=True))


def test_independent_requests_give_the_binomial_standard_error() -> None:
    rng = np.random.default_rng(SEED)
    c, t = batches(rng, 3000, 20.0, 0.10), batches(rng, 3000, 20.0, 0.12)
    lift = request_ratio_lift(c, t)
    assert lift.control == pytest.approx(c.x / c.d) and lift.treatment == pytest.approx(t.x / t.d)
    binomial = count_ratio_lift(c.x, c.d, t.x, t.d)
    assert lift.standard_error == pytest.approx(binomial.standard_error, rel=0.1)
    lo, hi = lift.interval
    assert lo < 0.02 < hi and lo > 0  # the true lift, and 0 excluded at 60,000 requests a variant


def test_a_counter_counting_several_per_request_is_not_taken_for_a_binomial() -> None:
    # items_total/visits_total: a checkout counts 5 items on average; the binomial/Poisson
    # interval of count_ratio_lift is too narrow, the delta method sees the spread.
    rng = np.random.default_rng(SEED + 1)
    c, t = batches(rng, 2000, 20.0, 0.1, items=5.0), batches(rng, 2000, 20.0, 0.1, items=5.0)
    naive = count_ratio_lift(c.x, c.d, t.x, t.d)
    assert request_ratio_lift(c, t).standard_error > 1.5 * naive.standard_error


def test_no_interval_before_enough_readings_and_requests() -> None:
    few = UnitSums.of_ratios([(1.0, 10.0)] * (MIN_UNITS - 1))
    enough = UnitSums.of_ratios([(1.0, 10.0), (2.0, 10.0)] * MIN_UNITS)
    assert request_ratio_lift(few, enough).interval == (-math.inf, math.inf)
    idle = UnitSums.of_ratios([(0.0, 0.0)] * (2 * MIN_UNITS) + [(1.0, 5.0)])  # readings, hardly any requests
    assert request_ratio_lift(idle, enough).interval == (-math.inf, math.inf)
    assert math.isfinite(request_ratio_lift(enough, enough).interval[0])
    with pytest.raises(ValueError):
        request_ratio_lift(UnitSums.of_values([1.0]), enough)


def test_a_a_interval_covers_zero_throughout_when_watched_every_reading() -> None:
    rng = np.random.default_rng(SEED + 2)
    runs, n, misses = 200, 400, 0
    for _ in range(runs):
        sums = []
        for _arm in range(2):
            d = rng.poisson(8.0, n).astype(float)
            x = rng.binomial(d.astype(int), 0.2).astype(float)
            sums.append([np.cumsum(v) for v in (x, x * x, d, d * d, x * d)])
        for k in range(MIN_UNITS, n, 5):
            c, t = (UnitSums(k + 1, *(float(v[k]) for v in s), ratio=True) for s in sums)  # type: ignore[misc]
            lo, hi = request_ratio_lift(c, t).interval
            if not lo <= 0.0 <= hi:
                misses += 1
                break
    assert misses / runs <= 0.05
