"""The anytime-valid core: a one-sided normal mixture on a sum of scores.

Given a score S and its information I (S ~ N(θ I, I) for an effect θ, as for
S = Σ I_k (d̂_k - δ0) over independent strata with I = Σ I_k), the likelihood
ratio of θ against θ = 0, mixed over θ ≥ 0 with a half-normal of scale τ, is

    Λ(S, I) = 2 / sqrt(1 + I τ²) · exp(z² / 2) · Φ(z),   z = S τ / sqrt(1 + I τ²)

(Robbins' mixture restricted to the harmful side, as confseq's
OneSidedNormalMixture). Λ is a nonnegative martingale under θ = 0 and a
supermartingale for θ < 0, so P(Λ ever reaches 1/α) ≤ α however often it is
looked at (Ville's inequality). Putting all the prior weight on the side the
question asks about ("is the candidate worse?") makes the boundary lower than
the two-sided mixture's at the same α.

An equal-weight average of components with different τ is again a martingale,
so several scales can be mixed at a cost of at most log(k) on the log scale.

Every function here takes floats or numpy arrays alike: the rollout judge calls
them with one number, the simulations with thousands.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

_LOG2 = math.log(2.0)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_erfc = np.frompyfunc(math.erfc, 1, 1)


def _half_z2_plus_log_cdf(z: Any) -> Any:
    """z²/2 + log Φ(z), without overflow for large |z|.

    For z ≥ -30, Φ(z) = erfc(-z/√2)/2 in double precision; below, Mills' ratio
    gives Φ(z) ≈ φ(z)/|z|·(1 - 1/z²), whose z²/2 cancels.
    """
    z = np.asarray(z, dtype=float)
    safe = np.maximum(z, -30.0)
    direct = 0.5 * safe * safe + np.log(np.asarray(_erfc(-safe / math.sqrt(2.0)), dtype=float) / 2.0)
    far = np.minimum(z, -30.0)
    tail = -np.log(-far) - _HALF_LOG_2PI + np.log1p(-1.0 / (far * far))
    return np.where(z >= -30.0, direct, tail)


def _half_z2_plus_log_cdf_scalar(z: float) -> float:
    if z >= -30.0:
        return 0.5 * z * z + math.log(math.erfc(-z / math.sqrt(2.0)) / 2.0)
    return -math.log(-z) - _HALF_LOG_2PI + math.log1p(-1.0 / (z * z))


def _log_one_sided_scalar(s: float, info: float, tau2: float) -> float:
    r = 1.0 + info * tau2
    return _LOG2 - 0.5 * math.log(r) + _half_z2_plus_log_cdf_scalar(s * math.sqrt(tau2 / r))


def log_one_sided(s: Any, info: Any, tau2: float) -> Any:
    """log Λ of one half-normal component of variance τ² (see the module docstring)."""
    if isinstance(s, float | int) and isinstance(info, float | int):
        return _log_one_sided_scalar(float(s), float(info), tau2)
    r = 1.0 + np.asarray(info, dtype=float) * tau2
    z = np.asarray(s, dtype=float) * np.sqrt(tau2 / r)
    return _LOG2 - 0.5 * np.log(r) + _half_z2_plus_log_cdf(z)


def log_mixture(s: Any, info: Any, tau2s: Sequence[float]) -> Any:
    """log of the equal-weight average of the components' Λ (log-sum-exp)."""
    if isinstance(s, float | int) and isinstance(info, float | int):
        each = [_log_one_sided_scalar(float(s), float(info), t2) for t2 in tau2s]
        best = max(each)
        return best + math.log(sum(math.exp(x - best) for x in each) / len(each))
    logs = np.stack([np.asarray(log_one_sided(s, info, t2), dtype=float) for t2 in tau2s])
    top = logs.max(axis=0)
    out = top + np.log(np.exp(logs - top).mean(axis=0))
    return float(out) if out.ndim == 0 else out


def boundary(info: float, tau2s: Sequence[float], alpha: float) -> float:
    """The score s at which log Λ(s, info) = log(1/α): the test rejects when S ≥ s.

    Λ grows with s, so bisection; bracketed by the one-component boundaries
    (each component at k/α puts the average at 1/α or above).
    """
    if info <= 0.0:
        return math.inf
    target = math.log(1.0 / alpha)
    lo, hi = 0.0, math.sqrt(info)
    while log_mixture(hi, info, tau2s) < target:
        lo, hi = hi, 2.0 * hi
    # Regula falsi, Illinois variant: about ten evaluations to a relative precision of
    # 1e-10 (bisection needed 33), which matters when the judge runs every second.
    f_lo, f_hi = log_mixture(lo, info, tau2s) - target, log_mixture(hi, info, tau2s) - target
    side = 0
    for _ in range(100):
        if hi - lo <= 1e-10 * hi:
            break
        mid = hi - f_hi * (hi - lo) / (f_hi - f_lo)
        f_mid = log_mixture(mid, info, tau2s) - target
        if f_mid == 0.0:
            return mid
        if f_mid > 0.0:
            hi, f_hi = mid, f_mid
            if side == 1:
                f_lo /= 2.0
            side = 1
        else:
            lo, f_lo = mid, f_mid
            if side == -1:
                f_hi /= 2.0
            side = -1
    return hi
