"""What the daemon's /metrics shows, as plain data read from the control plane at scrape time.

The collector turns a Snapshot into metric families and knows nothing of the
control plane; `gather` builds one from the live state (and bench.metrics_cost
builds one directly, with 1,000 services).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class VersionSample:
    service: str
    version: str
    track: str
    weight: int  # percent of the service's traffic
    ready: int
    total: int  # replicas
    restarts: int  # replica restarts, summed over its replicas


@dataclass(frozen=True)
class GuardrailSample:
    name: str  # error_rate, latency_p95, app:...
    estimate: float | None  # candidate minus baseline (None before both arms have traffic)
    lower_bound: float | None
    upper_bound: float | None
    tolerance: float


@dataclass(frozen=True)
class RolloutSample:
    service: str
    rollout: int  # its id
    candidate: str
    baseline: str
    state: str
    step: int  # index of the current step (0 = first)
    guardrails: tuple[GuardrailSample, ...] = ()
    decisions: dict[str, int] = field(default_factory=dict)  # outcome -> count


@dataclass(frozen=True)
class HistogramSample:
    bounds: tuple[float, ...]
    cumulative: tuple[int, ...]  # count at or below each bound
    count: int
    total: float


@dataclass(frozen=True)
class Snapshot:
    versions: tuple[VersionSample, ...]
    rollouts: tuple[RolloutSample, ...]
    publish_seconds: HistogramSample
    envoy_rejections: int
    envoy_restarts: int
