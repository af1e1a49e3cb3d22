"""Cumulative counts of one version at one moment, and the difference of two.

Envoy's counters are cumulative since Envoy started, and Envoy outlives the
daemon; storing the readings taken when a rollout (or a step) began lets a
restarted daemon compute the same deltas as the one that started it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class CountersReset(Exception):
    """A later reading is below an earlier one: the source restarted, the evidence is gone."""


@dataclass(frozen=True)
class Reading:
    ts: float
    requests: int = 0
    errors: int = 0
    buckets: tuple[tuple[float, int], ...] = ()  # latency: (upper bound ms, cumulative count)
    app: dict[str, float] = field(default_factory=dict)

    def minus(self, earlier: Reading) -> Reading:
        if self.requests < earlier.requests or self.errors < earlier.errors:
            raise CountersReset("envoy counters went down: envoy restarted during the rollout")
        before = dict(earlier.buckets)
        buckets = tuple((ub, count - int(before.get(ub, 0))) for ub, count in self.buckets)
        if any(count < 0 for _, count in buckets):
            raise CountersReset("latency histogram went down: envoy restarted during the rollout")
        app = {}
        for name, value in self.app.items():
            delta = value - earlier.app.get(name, 0.0)
            if delta < 0:
                raise CountersReset(f"app counter {name} went down: a replica restarted")
            app[name] = delta
        return Reading(self.ts, self.requests - earlier.requests, self.errors - earlier.errors, buckets, app)

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
