"""Latency as a proportion: the share of requests slower than the baseline's quantile.

A quantile of a bucketed histogram has no simple sequential test, but "is this
request slower than T?" is a yes/no per request, so the same harm test as for
errors applies. T is the smallest bucket bound at which the baseline reaches the
quantile; the guardrail then asks whether the candidate's share above T exceeds
the baseline's by more than the tolerance.
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


def latency_exceedance(
    baseline_buckets: Buckets,
    candidate_buckets: Buckets,
    quantile: float,
    *,
    baseline_total: int | None = None,
    candidate_total: int | None = None,
) -> tuple[float | None, Counts, Counts]:
    """Return (threshold_ms, slow_candidate, slow_baseline).

    threshold_ms is None when the baseline has no requests yet; both slow counts
    then have zero events. If the baseline never reaches `quantile` below the
    last finite bound (the rest is in the overflow bucket), the last bound is used.
    """
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile must be in (0, 1), got {quantile}")
    n_b = _total(baseline_buckets, baseline_total)
    n_c = _total(candidate_buckets, candidate_total)
    if n_b == 0 or not baseline_buckets:
        return None, Counts(0, n_c), Counts(0, n_b)
    threshold = baseline_buckets[-1][0]
    for upper, cumulative in baseline_buckets:
        if cumulative >= quantile * n_b:
            threshold = upper
            break
    slow_b = n_b - _cumulative_at(baseline_buckets, threshold)
    slow_c = n_c - _cumulative_at(candidate_buckets, threshold)
    return threshold, Counts(slow_c, n_c), Counts(slow_b, n_b)


def bucket_quantile(buckets: Buckets, q: float) -> float | None:
    """The smallest bucket bound (ms) at or below which at least a share `q` of requests fall."""
    total = buckets[-1][1] if buckets else 0
    if total == 0:
        return None
    return next((ub for ub, count in buckets if count >= q * total), buckets[-1][0])
