"""Latency as a proportion: the share of requests slower than a threshold T.

A quantile of a bucketed histogram has no simple sequential test, but "is this
request slower than T?" is a yes/no per request, so the same harm test as for
errors applies. T is the smallest bucket bound at which the baseline reaches the
quantile; the guardrail then asks whether the candidate's share above T exceeds
the baseline's by more than the tolerance.

T must not move with the data it is tested on: re-picked every second from the
baseline's own cumulative counts, the tested share was really the share above
the next bucket bound (3.1-3.9%, not 5%) and a 1.5x slowdown of every request
was never caught. The rollout judge therefore freezes T per step from the
baseline of the step before (`threshold_ms`).

With `relative` r, the candidate's requests are counted slow above T·(1 + r)
(the smallest bucket bound at or above it, so rounding never counts more as
slow): "the candidate's p95 may be up to r above the baseline's".
"""

from __future__ import annotations

from collections.abc import Sequence

from shiploop.analysis.proportions import Counts

# (upper_bound_ms, cumulative_count), sorted by bound, as Envoy reports them.
Buckets = Sequence[tuple[float, int]]


def _total(buckets: Buckets, total: int | None) -> int:
    # Requests above the last finite bound are only in the total, when given.
    last = buckets[-1][1] if buckets else 0
    return last if total is None else max(total, last)


def _cumulative_at(buckets: Buckets, bound: float) -> int:
    """Count at or below the largest bucket bound <= `bound`.

    Envoy gives every cluster the same bounds, so this is normally an exact
    match; with other bounds it counts more requests as slow (conservative).
    """
    count = 0
    for upper, cumulative in buckets:
        if upper > bound:
            break
        count = cumulative
    return count


def _pick_threshold(buckets: Buckets, total: int, quantile: float) -> float | None:
    if total == 0 or not buckets:
        return None
    return next((ub for ub, cumulative in buckets if cumulative >= quantile * total), buckets[-1][0])


def latency_exceedance(
    baseline_buckets: Buckets,
    candidate_buckets: Buckets,
    quantile: float,
    *,
    baseline_total: int | None = None,
    candidate_total: int | None = None,
    threshold_ms: float | None = None,
    relative: float = 0.0,
) -> tuple[float | None, Counts, Counts]:
    """Return (threshold_ms, slow_candidate, slow_baseline).

    With `threshold_ms` given (frozen), T is that; otherwise it is picked from
    these baseline buckets. threshold_ms is None when there is none yet (no
    baseline requests); both slow counts then have zero events. If the baseline
    never reaches `quantile` below the last finite bound (the rest is in the
    overflow bucket), the last bound is used.
    """
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile must be in (0, 1), got {quantile}")
    n_b = _total(baseline_buckets, baseline_total)
    n_c = _total(candidate_buckets, candidate_total)
    threshold = threshold_ms if threshold_ms is not None else _pick_threshold(baseline_buckets, n_b, quantile)
    if n_b == 0 or threshold is None:
        return threshold, Counts(0, n_c), Counts(0, n_b)
    slow_b = n_b - _cumulative_at(baseline_buckets, threshold)
    candidate_at = threshold * (1.0 + relative)
    if relative > 0.0:
        candidate_at = next((ub for ub, _ in candidate_buckets if ub >= candidate_at), candidate_at)
    slow_c = n_c - _cumulative_at(candidate_buckets, candidate_at)
    return threshold, Counts(slow_c, n_c), Counts(slow_b, n_b)


def bucket_quantile(buckets: Buckets, q: float) -> float | None:
    """The smallest bucket bound (ms) at or below which at least a share `q` of requests fall."""
    total = buckets[-1][1] if buckets else 0
    if total == 0:
        return None
    return next((ub for ub, count in buckets if count >= q * total), buckets[-1][0])
