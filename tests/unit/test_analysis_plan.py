"""The plan of a rollout at a given traffic: time per step, smallest regression caught, warnings."""

from __future__ import annotations

import numpy as np
import pytest

from shiploop.analysis import per_guardrail_alpha
from shiploop.analysis.plan import plan_rollout
from shiploop.analysis.simulation import World, simulate
from shiploop.gateway.render import HISTOGRAM_BUCKETS_MS
from shiploop.spec import RolloutPolicy

ALPHA = per_guardrail_alpha(0.05, 2)


def test_low_traffic_warns_up_front_and_suggests_steps() -> None:
    plan = plan_rollout([5, 25, 50, 100], 60, 300, 200, rps=5, base_rate=0.001, tolerance=0.002, alpha=ALPHA)
    assert plan.warnings[0] == "at 5 rps a 5% step needs 13 min to reach 200 requests (max_step 300 s)"
    assert plan.warnings[-1] == "consider steps: [25, 50, 100]"
    assert not plan.steps[0].reaches_min_samples and plan.steps[1].reaches_min_samples
    assert plan.steps[1].expected_s == pytest.approx(160.0)  # 200 requests at 1.25 rps


def test_default_policy_at_100_rps() -> None:
    plan = plan_rollout([5, 25, 50, 100], 60, 300, 200, rps=100, base_rate=0.001, tolerance=0.002, alpha=ALPHA)
    assert plan.warnings == [] and plan.total_s == 240
    assert plan.smallest_regression is not None and 0.002 < plan.smallest_regression < 0.009
    # More traffic, smaller regressions.
    busy = plan_rollout([5, 25, 50, 100], 60, 300, 200, rps=1000, base_rate=0.001, tolerance=0.002, alpha=ALPHA)
    assert busy.smallest_regression is not None and busy.smallest_regression < plan.smallest_regression


def test_plan_is_conservative_against_the_simulation() -> None:
    # At the planned smallest regression the simulated power before 100% is at least the plan's 0.8.
    plan = plan_rollout([5, 25, 50, 100], 60, 300, 200, rps=100, base_rate=0.001, tolerance=0.002, alpha=ALPHA)
    assert plan.smallest_regression is not None
    world = World(rps=100, base_error=0.001, candidate_error=0.001 + plan.smallest_regression)
    r = simulate(RolloutPolicy(), world, 500, seed=3, bounds=HISTOGRAM_BUCKETS_MS)
    assert np.mean((r.outcome == "rolled_back") & (r.weight_at_end < 100)) >= 0.8
