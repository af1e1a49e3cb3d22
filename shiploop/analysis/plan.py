"""What a rollout policy can promise at a given traffic rate, before it starts.

For each split step: how long it takes (min_step, or longer until min_samples
candidate requests arrive), and for the error guardrail the smallest
regression the steps before 100% catch with the asked power. The power is
that of the test at the end of the last split step alone (normal
approximation, the mixture's boundary at the information reached then);
looking every second only adds chances, so the true power is a little higher.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from shiploop.analysis.mixture import boundary
from shiploop.analysis.proportions import conservative_variance, mixture_of

_Z = {0.5: 0.0, 0.8: 0.8416, 0.9: 1.2816, 0.95: 1.6449}


@dataclass(frozen=True)
class StepPlan:
    weight: int
    expected_s: float  # min_step, or the time to min_samples candidate requests if longer
    reaches_min_samples: bool  # within max_step


@dataclass(frozen=True)
class RolloutPlan:
    rps: float
    base_rate: float
    steps: list[StepPlan]
    total_s: float  # expected time to promotion of an identical candidate
    smallest_regression: float | None  # candidate rate - base rate caught with `power` before 100%
    power: float
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rps": self.rps,
            "base_rate": self.base_rate,
            "steps": [s.__dict__ for s in self.steps],
            "total_s": self.total_s,
            "smallest_regression": self.smallest_regression,
            "power": self.power,
            "warnings": self.warnings,
        }


def _information(steps: Sequence[StepPlan], rps: float, p_b: float, p_c: float) -> float:
    info = 0.0
    for s in steps:
        if not 0 < s.weight < 100:
            continue
        n_c = rps * s.weight / 100.0 * s.expected_s
        n_b = rps * (100 - s.weight) / 100.0 * s.expected_s
        # As the test computes it: the conservative variance at the expected counts.
        info += 1.0 / float(conservative_variance(p_c * n_c, n_c) + conservative_variance(p_b * n_b, n_b))
    return info


def plan_rollout(
    steps: Sequence[int],
    min_step_s: float,
    max_step_s: float,
    min_samples: int,
    rps: float,
    base_rate: float,
    tolerance: float,
    alpha: float,
    power: float = 0.8,
) -> RolloutPlan:
    """The plan of a canary rollout at `rps` total requests per second; `alpha` is the guardrail's share."""
    if power not in _Z:
        raise ValueError(f"power must be one of {sorted(_Z)}")
    plans: list[StepPlan] = []
    warnings: list[str] = []
    for w in steps:
        cand_rps = rps * w / 100.0
        need = min_samples / cand_rps if cand_rps > 0 else math.inf
        expected = max(min_step_s, need)
        ok = need <= max_step_s
        plans.append(StepPlan(w, min(expected, max_step_s), ok))
        if not ok:
            needed = "forever" if math.isinf(need) else f"{need / 60:.0f} min"
            warnings.append(
                f"at {rps:g} rps a {w}% step needs {needed} to reach {min_samples} requests (max_step {max_step_s:g} s)"
            )
    if warnings:
        fine = [w for w in steps if rps * w / 100.0 * max_step_s >= min_samples]
        if fine:
            warnings.append(f"consider steps: {fine}")
    split = [p for p in plans if p.weight < 100]
    tau2s = mixture_of(tolerance, None)
    smallest: float | None = None
    if split and 0.0 < base_rate < 1.0:

        def caught(delta: float) -> bool:
            p_c = min(base_rate + delta, 0.999)
            info = _information(split, rps, base_rate, p_c)
            if info <= 0.0:
                return False
            b = boundary(info, tau2s, alpha)
            return (delta - tolerance) * math.sqrt(info) - b / math.sqrt(info) >= _Z[power]

        top = 1.0 - base_rate - 1e-3
        if caught(top):
            lo, hi = tolerance, top
            for _ in range(50):
                mid = (lo + hi) / 2
                lo, hi = (lo, mid) if caught(mid) else (mid, hi)
            smallest = hi
    total = sum(p.expected_s for p in plans)
    return RolloutPlan(rps, base_rate, plans, total, smallest, power, warnings)
