"""Turning raw cumulative readings, which can reset, into totals that never go down (pure).

A counter that reads lower than before was reset: Envoy restarted or
recreated the cluster's stats, or an app replica restarted. As Prometheus's
`increase()` does, the new reading then counts as the increase since the
reset. Counts made after the last reading and before the reset are lost
(at most one sampling interval's worth), and nothing ever goes negative.
Each reset is counted, so a caller can see that it happened.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from shiploop.metrics.envoy_source import Buckets, VersionTraffic


def increase(prev: float | None, new: float) -> tuple[float, bool]:
    """The increase between two readings of one counter, and whether it was reset."""
    if prev is None:
        return new, False
    if new < prev:
        return new, True
    return new - prev, False


def bucket_increase(prev: Buckets, new: Buckets) -> tuple[Buckets, bool]:
    if not prev:
        return new, False
    if not new:
        return (), False  # no reading: nothing to add, and no reason to call it a reset
    same_bounds = [b for b, _ in prev] == [b for b, _ in new]
    if not same_bounds or any(n < p for (_, p), (_, n) in zip(prev, new, strict=True)):
        return new, True
    return tuple((b, n - p) for (b, p), (_, n) in zip(prev, new, strict=True)), False


def add_buckets(a: Buckets, b: Buckets) -> Buckets:
    if not a:
        return b
    if not b:
        return a
    if [x for x, _ in a] != [x for x, _ in b]:
        return b  # the bounds changed (Envoy restarted on other buckets): start over from the new ones
    return tuple((bound, x + y) for (bound, x), (_, y) in zip(a, b, strict=True))


def sub_buckets(a: Buckets, b: Buckets) -> Buckets:
    """a - b, bucket-wise. When b has other bounds, it cannot be subtracted and `a` is returned."""
    if not b or [x for x, _ in a] != [x for x, _ in b]:
        return a
    return tuple((bound, max(0, x - y)) for (bound, x), (_, y) in zip(a, b, strict=True))


def advance_traffic(
    total: VersionTraffic, prev: VersionTraffic | None, new: VersionTraffic
) -> tuple[VersionTraffic, bool]:
    """Add the increase from raw reading `prev` to raw reading `new` onto `total`."""
    fields = ("requests", "errors_5xx", "attempts", "retries")
    resets = False
    inc: dict[str, int] = {}
    for f in fields:
        d, r = increase(None if prev is None else getattr(prev, f), getattr(new, f))
        inc[f] = int(d)
        resets |= r
    buckets, r = bucket_increase(prev.latency_buckets if prev else (), new.latency_buckets)
    resets |= r
    acc_buckets = add_buckets(total.latency_buckets, buckets)
    return (
        VersionTraffic(
            requests=total.requests + inc["requests"],
            errors_5xx=total.errors_5xx + inc["errors_5xx"],
            attempts=total.attempts + inc["attempts"],
            retries=total.retries + inc["retries"],
            latency_buckets=acc_buckets,
            latency_total=acc_buckets[-1][1] if acc_buckets else 0,
        ),
        resets,
    )


def diff_traffic(latest: VersionTraffic, base: VersionTraffic) -> VersionTraffic:
    buckets = sub_buckets(latest.latency_buckets, base.latency_buckets)
    return VersionTraffic(
        requests=max(0, latest.requests - base.requests),
        errors_5xx=max(0, latest.errors_5xx - base.errors_5xx),
        attempts=max(0, latest.attempts - base.attempts),
        retries=max(0, latest.retries - base.retries),
        latency_buckets=buckets,
        latency_total=buckets[-1][1] if buckets else 0,
    )


@dataclass
class ReplicaCounters:
    """The last raw readings of every replica (by port), kept while a replica is away.

    Replicas keep their port across restarts (runtime/local.py). A replica that
    drops out of the ready list and comes back is therefore compared with its own
    last reading: if it restarted, it reads lower and counts as a reset. If it
    was only unready, it adds just what is new. Only the app's counters are kept
    per replica: a single replica restarting lowers the sum by less than a full
    reset would, so resets cannot be detected on the sum.
    """

    raw: dict[int, dict[str, float]]
    seen: dict[int, float]  # port -> last time it answered

    @classmethod
    def empty(cls) -> ReplicaCounters:
        return cls({}, {})

    def advance(self, total: dict[str, float], now: float, readings: Mapping[int, Mapping[str, float]]) -> int:
        """Add every replica's increase onto `total` (in place); return how many counters were reset."""
        resets = 0
        for port, values in readings.items():
            last = self.raw.get(port, {})
            for name, value in values.items():
                d, r = increase(last.get(name), value)
                total[name] = total.get(name, 0.0) + d
                resets += r
            self.raw[port] = dict(values)
            self.seen[port] = now
        return resets

    def forget_before(self, cutoff: float) -> None:
        for port in [p for p, t in self.seen.items() if t < cutoff]:
            del self.raw[port], self.seen[port]
