"""Per-version traffic over the last minutes in fixed bins, for the dashboard's charts.

Built from the metrics sampler's snapshots (cumulative, reset-corrected,
one a second): a bin's counts are the difference between the last snapshot
at or before its end and the last one at or before its start (for the first
bin of a version, its first snapshot), so a bin with a failed reading still
counts what the totals say. Rates are per second between those snapshots. A
bin with no requests has rates of None, never 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shiploop.analysis import bucket_quantile
from shiploop.metrics.counters import diff_traffic
from shiploop.metrics.sampler import VersionSnapshot


def binned(history: Sequence[VersionSnapshot], now: float, span_s: float, bin_s: float) -> list[dict[str, Any]]:
    """One point per `bin_s` over the last `span_s` before `now`: t (bin end), requests, rps, error_rate, p95_ms."""
    if not history:
        return []
    bins = int(span_s // bin_s)
    first_end = now - (bins - 1) * bin_s
    out: list[dict[str, Any]] = []
    i = 0
    base: VersionSnapshot | None = None
    # Advance one cursor through the history: O(snapshots + bins).
    start = first_end - bin_s
    while i < len(history) and history[i].ts <= start:
        base = history[i]
        i += 1
    for b in range(bins):
        end = first_end + b * bin_s
        if base is None and i < len(history) and history[i].ts <= end:
            base = history[i]  # the first reading ever: this bin counts from it, not from its start
        latest = base
        while i < len(history) and history[i].ts <= end:
            latest = history[i]
            i += 1
        if base is None or latest is None or latest is base:
            continue  # no reading in this bin, or just one to count from
        d = diff_traffic(latest.traffic, base.traffic)
        seconds = max(latest.ts - base.ts, 1e-9)
        out.append(
            {
                "t": round(end, 1),
                "requests": d.requests,
                "rps": round(d.requests / seconds, 2),
                "error_rate": d.errors_5xx / d.requests if d.requests else None,
                "p95_ms": bucket_quantile(d.latency_buckets, 0.95),
            }
        )
        base = latest
    return out
