"""A rollout policy at the measured traffic: what it will take and what it can catch, before it starts."""

from __future__ import annotations

from typing import Any

from shiploop.analysis import per_guardrail_alpha
from shiploop.analysis.plan import plan_rollout
from shiploop.spec import RolloutPolicy

# The error rate assumed when the baseline showed none yet: the plan would otherwise divide by zero.
FLOOR_RATE = 0.001


def policy_plan(policy: RolloutPolicy, rps: float, error_rate: float | None) -> dict[str, Any]:
    """`plan_rollout` for this policy's steps and its error_rate guardrail (if any), as JSON."""
    guard = next((g for g in policy.guardrails if g.kind == "error_rate"), None)
    alpha = per_guardrail_alpha(policy.alpha, max(1, len(policy.guardrails)))
    base = max(error_rate or 0.0, FLOOR_RATE)
    steps = policy.steps if policy.strategy == "canary" else [50]
    plan = plan_rollout(
        steps,
        policy.min_step,
        policy.max_step,
        policy.min_samples,
        rps,
        base,
        guard.tolerance if guard else 0.0,
        alpha,
    )
    out = plan.as_dict()
    if guard is None:
        out["smallest_regression"] = None
    out["strategy"] = policy.strategy
    return out
