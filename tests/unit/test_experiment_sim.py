"""Watched experiments by simulation: A/A false ships, coverage over the whole run, power at the plan's N.

A few hundred runs with fixed seeds, every unit a look (the strictest
watcher); `python -m bench.experiments` runs thousands and prints the numbers.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from shiploop.analysis.experiment import MIN_UNITS, UnitSums, estimate_lift, plan_experiment
from shiploop.analysis.experiment_simulation import Scenario, draw, simulate, watch

RUNS = 300
ALPHA = 0.05


def test_the_simulation_computes_the_interval_as_estimate_lift_does() -> None:
    for metric in ("conversion", "revenue"):
        scenario = Scenario(0.1, 0.12, 3000, allocation_percent=30, mde=0.02, metric=metric)
        treated, value = draw(scenario, 1, np.random.default_rng(7))
        seen = watch(scenario, treated, value)
        for m in (MIN_UNITS, 400, 1999, 3000):
            t, v = treated[0, :m], value[0, :m]
            lift = estimate_lift(UnitSums.of_values(v[~t]), UnitSums.of_values(v[t]), mde=0.02)
            assert seen.lift[0, m - 1] == pytest.approx(lift.absolute, abs=1e-12)
            assert seen.lower[0, m - 1] == pytest.approx(lift.interval[0], rel=1e-9, abs=1e-12)
            assert seen.upper[0, m - 1] == pytest.approx(lift.interval[1], rel=1e-9, abs=1e-12)


@pytest.mark.parametrize(
    ("scenario", "naive"),
    [
        (Scenario(0.1, 0.1, 5000, mde=0.02), True),
        # The small-sample traps of the asymptotic CS (see arm_variances): a rare event in a 10% variant.
        (Scenario(0.02, 0.02, 10000, allocation_percent=10, mde=0.01, look_every=2), False),
        (Scenario(0.02, 0.02, 10000, allocation_percent=10, mde=0.5, metric="revenue", look_every=2), False),
    ],
    ids=["conversion-10%", "rare-conversion-10/90-split", "rare-revenue-10/90-split"],
)
def test_a_watched_a_a_experiment_rarely_ships_and_the_interval_covers_throughout(
    scenario: Scenario, naive: bool
) -> None:
    r = simulate(scenario, RUNS, seed=11)
    # Ship needs the lower bound above 0: one side of a two-sided α, so about α/2 at most.
    assert r.shipped <= ALPHA
    # The interval covered the true lift (0) at every look of the run in at least 1 - α of the runs.
    assert r.covered >= 1 - ALPHA
    if naive:
        # The same rule with a fixed-horizon 95% interval, looked at as often, ships far more often:
        # what the confidence sequence is for, and proof that this simulation can fail.
        assert r.naive_shipped > 2 * ALPHA


def test_power_at_the_mde_within_the_planned_sequential_units() -> None:
    plan = plan_experiment(0.1, 0.02, units_per_second=10.0, allocation_percent=50)
    scenario = Scenario(0.1, 0.12, plan.sequential_units, mde=0.02, look_every=10)
    r = simulate(scenario, 200, seed=5)
    # The plan promises power 0.8 from a single look at N; watching all along only adds chances.
    assert r.shipped >= 0.8
    assert r.covered >= 1 - ALPHA
    # And the experiments that shipped did so well before N, most of them.
    assert r.median_decision_units < plan.sequential_units
    assert not math.isnan(r.median_decision_units)


def test_a_losing_candidate_is_stopped() -> None:
    r = simulate(Scenario(0.1, 0.05, 12000, mde=0.02, look_every=10), 100, seed=9)
    assert r.stopped >= 0.8 and r.shipped == 0.0
