"""Cumulative counts of one version at one moment, the difference of two, and a step's evidence.

Envoy's counters are cumulative since Envoy started, and Envoy outlives the
daemon; storing the readings taken when each step began (and ended) lets a
restarted daemon compute the same deltas as the one that started it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class CountersReset(Exception):
    """A later reading is below an earlier one: the source restarted, the evidence is gone."""


class ReadingUnavailable(Exception):
    """The counts of a version could not be read this time: no counts is no evidence, never zero traffic.

    A plain Exception with a message (it was a field-less dataclass once, and
    `raise ReadingUnavailable("...")` was a TypeError).
    """


@dataclass(frozen=True)
class Reading:
    ts: float
    requests: int = 0
    errors: int = 0
    buckets: tuple[tuple[float, int], ...] = ()  # latency: (upper bound ms, cumulative count)
    app: dict[str, float] = field(default_factory=dict)

    def minus(self, earlier: Reading, who: str = "") -> Reading:
        """The counts between `earlier` and this reading; CountersReset names the counter and its numbers."""
        of = f" of {who}" if who else ""
        if self.requests < earlier.requests:
            raise CountersReset(f"envoy's request count{of} went down from {earlier.requests} to {self.requests}")
        if self.errors < earlier.errors:
            raise CountersReset(f"envoy's 5xx count{of} went down from {earlier.errors} to {self.errors}")
        before = dict(earlier.buckets)
        buckets = tuple((ub, count - int(before.get(ub, 0))) for ub, count in self.buckets)
        for (ub, count), (_, now_count) in zip(buckets, self.buckets, strict=True):
            if count < 0:
                raise CountersReset(
                    f"envoy's latency histogram{of} went down (bucket <= {ub:g} ms: {now_count - count} -> {now_count})"
                )
        app: dict[str, float] = {}
        for name, value in self.app.items():
            before_value = earlier.app.get(name, 0.0)
            if value < before_value:
                raise CountersReset(f"app counter {name}{of} went down from {before_value:g} to {value:g}")
            app[name] = value - before_value
        return Reading(self.ts, self.requests - earlier.requests, self.errors - earlier.errors, buckets, app)

    def plus(self, other: Reading) -> Reading:
        """The sum of two deltas (of different steps); latency buckets added bound by bound."""
        mine = dict(self.buckets)
        theirs = dict(other.buckets)
        bounds = sorted(set(mine) | set(theirs))
        app = dict(self.app)
        for name, value in other.app.items():
            app[name] = app.get(name, 0.0) + value
        return Reading(
            max(self.ts, other.ts),
            self.requests + other.requests,
            self.errors + other.errors,
            tuple((ub, int(mine.get(ub, 0)) + int(theirs.get(ub, 0))) for ub in bounds),
            app,
        )

    def without_app(self) -> Reading:
        return Reading(self.ts, self.requests, self.errors, self.buckets)

    def to_json(self) -> dict[str, Any]:
        return {
            "ts": self.ts,
            "requests": self.requests,
            "errors": self.errors,
            "buckets": [list(b) for b in self.buckets],
            "app": self.app,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Reading:
        return cls(
            d["ts"], d["requests"], d["errors"], tuple((float(u), int(c)) for u, c in d["buckets"]), dict(d["app"])
        )


@dataclass(frozen=True)
class Pair:
    """Cumulative readings of candidate and baseline taken together."""

    candidate: Reading
    baseline: Reading

    def minus(self, earlier: Pair) -> Pair:
        return Pair(
            self.candidate.minus(earlier.candidate, "the candidate"),
            self.baseline.minus(earlier.baseline, "the baseline"),
        )

    def plus(self, other: Pair) -> Pair:
        return Pair(self.candidate.plus(other.candidate), self.baseline.plus(other.baseline))

    def requests_went_down(self, earlier: Pair) -> str | None:
        """Which version's request count is below `earlier`'s, as a sentence; None if neither."""
        for who, now, before in (
            ("the candidate", self.candidate, earlier.candidate),
            ("the baseline", self.baseline, earlier.baseline),
        ):
            if now.requests < before.requests:
                return f"envoy's request count of {who} went down from {before.requests} to {now.requests}"
        return None

    def to_json(self) -> dict[str, Any]:
        return {"candidate": self.candidate.to_json(), "baseline": self.baseline.to_json()}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Pair:
        return cls(Reading.from_json(d["candidate"]), Reading.from_json(d["baseline"]))


@dataclass(frozen=True)
class Observation:
    """What a readings source saw now: both versions' cumulative counts, and the app scrapes that failed.

    When `source_errors` is not empty the app counters are left out of both
    readings: a sum over the replicas that answered is not a count to judge.
    """

    readings: Pair
    source_errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class Stratum:
    """One step's evidence: the deltas of candidate and baseline while the weights stayed constant."""

    index: int
    weight: int  # candidate percent in this step (0 for mirror/ab)
    candidate: Reading  # delta over the step (so far, for the current step)
    baseline: Reading
