"""`rollout plan`: the policy at the measured traffic."""

from __future__ import annotations

from shiploop.rollout.plan import policy_plan
from shiploop.spec import RolloutPolicy


def test_default_policy_plan_at_5_and_100_rps() -> None:
    low = policy_plan(RolloutPolicy(), rps=5, error_rate=0.0)
    assert low["warnings"][0].startswith("at 5 rps a 5% step needs 13 min to reach 200 requests")
    assert low["base_rate"] == 0.001  # no errors seen: planned at the floor rate
    busy = policy_plan(RolloutPolicy(), rps=100, error_rate=0.001)
    assert busy["warnings"] == [] and busy["total_s"] == 240
    assert 0.002 < busy["smallest_regression"] < 0.009
    assert [s["weight"] for s in busy["steps"]] == [5, 25, 50, 100]


def test_plan_without_an_error_guardrail_promises_nothing_about_errors() -> None:
    policy = RolloutPolicy(guardrails=[{"metric": "latency", "quantile": 0.95, "tolerance": 0.05}])
    assert policy_plan(policy, rps=100, error_rate=0.01)["smallest_regression"] is None
