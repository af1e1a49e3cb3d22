"""Simulated rollouts: false rollbacks, power and speed of the harm test.

Each rollout: 100 rps split at random 5% -> 25% -> 50% to the candidate, the harm
test on cumulative counts every second, alpha = 0.05. Run with -s to see the rates.
"""

from __future__ import annotations

import math
import random
import statistics

from shiploop.analysis import simulate_rollout

ALPHA = 0.05
RAMP = [0.05, 0.25, 0.5]


def margin(rate: float, runs: int) -> float:
    # Three binomial standard errors: a true rate of alpha fails this about 1 time in 700.
    return 3.0 * math.sqrt(rate * (1.0 - rate) / runs)


def rollouts(
    seed: int, runs: int, p_b: float, p_c: float, seconds: int, tolerance: float, step_s: int | None = None
) -> list[tuple[bool, int]]:
    rng = random.Random(seed)
    return [simulate_rollout(rng, p_b, p_c, 100, RAMP, seconds, tolerance, ALPHA, step_s=step_s) for _ in range(runs)]


def test_aa_false_rollbacks_within_alpha() -> None:
    runs = 1000
    results = rollouts(seed=11, runs=runs, p_b=0.001, p_c=0.001, seconds=120, tolerance=0.002)
    rate = sum(rolled for rolled, _ in results) / runs
    print(f"\nA/A 0.1% vs 0.1%, tolerance 0.2%, 120 s: false rollbacks {rate:.3f} over {runs} runs")
    assert rate <= ALPHA + margin(ALPHA, runs)


def test_null_boundary_false_rollbacks_within_alpha() -> None:
    # The hardest null: the candidate is worse by exactly the tolerance.
    runs = 500
    results = rollouts(seed=12, runs=runs, p_b=0.001, p_c=0.003, seconds=120, tolerance=0.002)
    rate = sum(rolled for rolled, _ in results) / runs
    print(f"\nboundary 0.1% vs 0.3%, tolerance 0.2%: false rollbacks {rate:.3f} over {runs} runs")
    assert rate <= ALPHA + margin(ALPHA, runs)
    # And at a common error rate with zero tolerance, where the normal approximation is exercised.
    results = rollouts(seed=13, runs=300, p_b=0.05, p_c=0.05, seconds=120, tolerance=0.0)
    rate = sum(rolled for rolled, _ in results) / 300
    print(f"A/A 5% vs 5%, tolerance 0: false rollbacks {rate:.3f} over 300 runs")
    assert rate <= ALPHA + margin(ALPHA, 300)


def test_regression_caught_with_power() -> None:
    # 0.1% -> 1% errors against a 0.2% tolerance; one-minute steps, budget 180 s.
    runs = 300
    results = rollouts(seed=21, runs=runs, p_b=0.001, p_c=0.01, seconds=180, tolerance=0.002, step_s=60)
    times = [t for rolled, t in results if rolled]
    power = len(times) / runs
    print(f"\n0.1% -> 1%: power {power:.3f} within 180 s, median time to detect {statistics.median(times)} s")
    assert power > 0.9


def test_broken_candidate_caught_in_seconds() -> None:
    runs = 200
    results = rollouts(seed=31, runs=runs, p_b=0.001, p_c=1.0, seconds=60, tolerance=0.002)
    times = [t for rolled, t in results if rolled]
    print(
        f"\nbroken (100% errors) at 5% of 100 rps: caught {len(times)}/{runs}, "
        f"median {statistics.median(times)} s, max {max(times)} s"
    )
    assert len(times) == runs
    assert max(times) <= 10
