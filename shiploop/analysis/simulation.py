"""Simulated canary rollouts, to measure the harm test's error rate, power and speed.

Every second, `rps` requests are split at random between the arms (as Envoy's
weighted clusters do) and each request fails independently; the harm test then
looks at the cumulative counts, exactly as the controller would.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from shiploop.analysis.proportions import Counts, harm_test

# Below this mean the binomial is drawn exactly by geometric skipping (cost ~ mean);
# above it the normal approximation is accurate to well under one count.
_EXACT_MEAN = 15.0


def binomial(rng: random.Random, n: int, p: float) -> int:
    """A Binomial(n, p) draw (Python 3.11 has no random.binomialvariate)."""
    if n <= 0 or p <= 0.0:
        return 0
    if p >= 1.0:
        return n
    if p > 0.5:
        return n - binomial(rng, n, 1.0 - p)
    mean = n * p
    if mean >= _EXACT_MEAN:
        draw = round(rng.gauss(mean, math.sqrt(mean * (1.0 - p))))
        return min(n, max(0, draw))
    # Trials up to and including each success are Geometric(p): skip over them.
    log_q = math.log1p(-p)
    successes = 0
    position = 0
    while True:
        position += int(math.log(1.0 - rng.random()) / log_q) + 1
        if position > n:
            return successes
        successes += 1


def simulate_rollout(
    rng: random.Random,
    p_baseline: float,
    p_candidate: float,
    rps: int,
    weight: float | Sequence[float],
    seconds: int,
    tolerance: float,
    alpha: float,
    *,
    step_s: int | None = None,
    tau2: float | None = None,
) -> tuple[bool, int]:
    """Run one rollout; return (rolled_back, time_s of the rollback or `seconds`).

    `weight` is the candidate's share, or a schedule of shares, one per step of
    `step_s` seconds (by default the steps split `seconds` evenly).
    """
    weights = [weight] if isinstance(weight, int | float) else list(weight)
    step = step_s if step_s is not None else max(1, math.ceil(seconds / len(weights)))
    n_c = x_c = n_b = x_b = 0
    for t in range(1, seconds + 1):
        w = weights[min((t - 1) // step, len(weights) - 1)]
        arrived_c = binomial(rng, rps, w)
        arrived_b = rps - arrived_c
        n_c += arrived_c
        n_b += arrived_b
        x_c += binomial(rng, arrived_c, p_candidate)
        x_b += binomial(rng, arrived_b, p_baseline)
        if n_c and n_b and harm_test(Counts(x_c, n_c), Counts(x_b, n_b), tolerance, alpha, tau2, bounds=False).harmful:
            return True, t
    return False, seconds
