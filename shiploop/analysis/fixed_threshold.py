"""A Flagger-like fixed-threshold policy, kept only as a benchmark baseline.

Flagger's canary analysis, with the thresholds its docs use for the built-in
metrics: every one-minute interval the canary must show a success rate (non-5xx)
of at least 99% and a p99 of at most 500 ms; each failed interval adds one to a
failed-check counter that is never reset during the analysis, and at 5 failed
checks (`threshold: 5`) the canary is rolled back. An interval without traffic
fails too (Flagger's "no values found"). Flagger notices the fifth failure at its
next tick; this policy rolls back on the fifth failure itself, so it is, if
anything, a little faster than the original.

It compares the candidate with absolute numbers, not with the baseline: a
service that already runs at 1.5% errors fails every interval, and a regression
from 0.1% to 0.9% passes every interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

FixedAction = Literal["advance", "hold", "rollback"]


@dataclass(frozen=True)
class IntervalStats:
    """The candidate's numbers over one analysis interval."""

    requests: int
    errors: int
    p99_ms: float | None


@dataclass(frozen=True)
class FixedDecision:
    action: FixedAction
    failed_checks: int
    reason: str


@dataclass(frozen=True)
class FixedThresholdPolicy:
    min_success_rate: float = 0.99
    max_p99_ms: float = 500.0
    threshold: int = 5
    interval_s: float = 60.0

    def check(self, interval: IntervalStats) -> str | None:
        """None if the interval passes, else why it failed."""
        if interval.requests <= 0:
            return "no values found (no traffic)"
        success = 1.0 - interval.errors / interval.requests
        if success < self.min_success_rate:
            return f"success rate {100 * success:.2f}% < {100 * self.min_success_rate:.0f}%"
        if interval.p99_ms is not None and interval.p99_ms > self.max_p99_ms:
            return f"p99 {interval.p99_ms:.0f} ms > {self.max_p99_ms:.0f} ms"
        return None

    def decide(self, history: Sequence[IntervalStats]) -> FixedDecision:
        """The decision after the last interval of `history` (every interval since the start)."""
        if not history:
            return FixedDecision("hold", 0, "no interval yet")
        failures = [self.check(i) for i in history]
        failed = sum(1 for f in failures if f is not None)
        last = failures[-1]
        if failed >= self.threshold:
            worst = next(f for f in reversed(failures) if f is not None)
            return FixedDecision("rollback", failed, f"{failed} failed checks ≥ {self.threshold}: {worst}")
        if last is not None:
            return FixedDecision("hold", failed, f"failed check {failed}/{self.threshold}: {last}")
        return FixedDecision("advance", failed, "all metrics within thresholds")
