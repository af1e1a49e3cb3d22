"""Sample-ratio mismatch: did the router split traffic the way it was told to?

A mismatch means the comparison itself is suspect (a crashing replica, a sticky
hash gone wrong), so the step holds rather than trusting any verdict. The check
runs every second, so it must be a sequential test: a fixed-n chi-square at
p < 0.001 repeated every second falsely held 2.1-3.4% of A/A rollouts at
100 rps and 5.5-6.8% at 5 rps. This is the Dirichlet-multinomial test of
Lindon & Malek, "Anytime-valid inference for multinomial count data" (NeurIPS
2022), as in savvi's Multinomial: with the configured split p0 and a Dirichlet
prior of concentration k·p0, the Bayes factor

    BF_n = Γ(k) / Γ(k + n) · Π Γ(k p0_i + x_i) / Γ(k p0_i) / Π p0_i^x_i

is a martingale under "the split is p0", so P(BF ever reaches 1/α) ≤ α at any
number of looks. The chi-square statistic is still reported, as a description.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

# Per step (the test restarts with each step's weights): a rollout with three
# split steps holds falsely at most 0.3% of the time.
SRM_ALPHA = 0.001
# savvi's default concentration: the prior puts its weight on splits within a few
# points of the configured one, where real routing faults are.
SRM_CONCENTRATION = 100.0

_EPS = 1e-15
_TINY = 1e-300
_MAX_ITER = 1000


@dataclass(frozen=True)
class SrmResult:
    chi2: float
    df: int
    p_value: float  # 1 / BF, capped at 1: an anytime-valid p-value at this look
    mismatch: bool
    observed: dict[str, int]
    expected: dict[str, float]
    log_bayes_factor: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "chi2": self.chi2,
            "df": self.df,
            "p_value": self.p_value,
            "mismatch": self.mismatch,
            "log_bayes_factor": self.log_bayes_factor,
            "observed": dict(self.observed),
            "expected": dict(self.expected),
        }


def _lower_series(a: float, x: float) -> float:
    """Regularized lower incomplete gamma P(a, x) by its series; good for x < a + 1."""
    term = 1.0 / a
    total = term
    ap = a
    for _ in range(_MAX_ITER):
        ap += 1.0
        term *= x / ap
        total += term
        if abs(term) < abs(total) * _EPS:
            break
    return total * math.exp(-x + a * math.log(x) - math.lgamma(a))


def _upper_fraction(a: float, x: float) -> float:
    """Regularized upper incomplete gamma Q(a, x) by its continued fraction (modified Lentz)."""
    b = x + 1.0 - a
    c = 1.0 / _TINY
    d = 1.0 / b
    h = d
    for i in range(1, _MAX_ITER):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = _TINY if abs(d) < _TINY else d
        c = b + an / c
        c = _TINY if abs(c) < _TINY else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            break
    return h * math.exp(-x + a * math.log(x) - math.lgamma(a))


def gamma_q(a: float, x: float) -> float:
    """Regularized upper incomplete gamma function Q(a, x) = Γ(a, x) / Γ(a)."""
    if a <= 0.0:
        raise ValueError(f"a must be positive, got {a}")
    if x <= 0.0:
        return 1.0
    if x < a + 1.0:
        return max(0.0, 1.0 - _lower_series(a, x))
    return min(1.0, _upper_fraction(a, x))


def chi2_sf(chi2: float, df: int) -> float:
    """P(X ≥ chi2) for X ~ chi-square with df degrees of freedom."""
    if df <= 0:
        return 1.0
    return gamma_q(df / 2.0, chi2 / 2.0)


def log_bayes_factor(counts: list[int], probs: list[float], concentration: float = SRM_CONCENTRATION) -> float:
    """log BF of the Dirichlet-multinomial mixture against the split `probs` (see the module docstring)."""
    n = sum(counts)
    a = [concentration * p for p in probs]
    out = math.lgamma(concentration) - math.lgamma(concentration + n)
    for x, ai, p in zip(counts, a, probs, strict=True):
        out += math.lgamma(ai + x) - math.lgamma(ai) - x * math.log(p)
    return out


def srm_test(observed: dict[str, int], weights: dict[str, float], alpha: float = SRM_ALPHA) -> SrmResult:
    """Sequential test of `observed` counts (since the weights were set) against `weights` (any positive scale).

    Versions with weight 0 (or absent from `weights`) are left out of the test;
    any traffic to them is a mismatch on its own.
    """
    live = {k: w for k, w in weights.items() if w > 0.0}
    stray = any(n > 0 for k, n in observed.items() if k not in live)
    counts = {k: observed.get(k, 0) for k in live}
    total = sum(counts.values())
    weight_sum = sum(live.values())
    expected = {k: total * w / weight_sum for k, w in live.items()} if total else {k: 0.0 for k in live}
    if total == 0 or len(live) < 2:
        chi2, df, log_bf = 0.0, 0, 0.0
    else:
        chi2 = sum((counts[k] - e) ** 2 / e for k, e in expected.items())
        df = len(live) - 1
        log_bf = log_bayes_factor(list(counts.values()), [w / weight_sum for w in live.values()])
    p = min(1.0, math.exp(-log_bf)) if log_bf < 700 else 0.0
    mismatch = stray or log_bf >= math.log(1.0 / alpha)
    return SrmResult(chi2, df, p, mismatch, {**counts, **observed}, expected, log_bf)
