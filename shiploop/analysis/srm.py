"""Sample-ratio mismatch: did the router split traffic the way it was told to?

A Pearson chi-square goodness-of-fit test of observed request counts per
version against the configured weights. A mismatch means the comparison itself
is suspect (a crashing replica, a sticky hash gone wrong), so the step holds
rather than trusting any verdict. The p-value cut (0.001) is strict because the
check is repeated at every look; it is not a sequential test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

SRM_P_VALUE = 0.001

_EPS = 1e-15
_TINY = 1e-300
_MAX_ITER = 1000


@dataclass(frozen=True)
class SrmResult:
    chi2: float
    df: int
    p_value: float
    mismatch: bool
    observed: dict[str, int]
    expected: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        return {
            "chi2": self.chi2,
            "df": self.df,
            "p_value": self.p_value,
            "mismatch": self.mismatch,
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


def srm_test(observed: dict[str, int], weights: dict[str, float]) -> SrmResult:
    """Chi-square test of `observed` counts against `weights` (any positive scale).

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
        chi2, df, p = 0.0, 0, 1.0
    else:
        chi2 = sum((counts[k] - e) ** 2 / e for k, e in expected.items())
        df = len(live) - 1
        p = chi2_sf(chi2, df)
    return SrmResult(chi2, df, p, stray or p < SRM_P_VALUE, {**counts, **observed}, expected)
