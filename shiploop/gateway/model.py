"""The desired routing state the gateway renders: plain data, no knowledge of rollouts.

The control plane decides *what* should be routed where; this module only
describes it in terms Envoy understands (clusters, ordered routes, weights).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int


@dataclass(frozen=True)
class CircuitBreakerLimits:
    max_connections: int = 1024
    max_pending_requests: int = 1024
    max_requests: int = 1024
    max_retries: int = 3


@dataclass(frozen=True)
class OutlierPolicy:
    consecutive_5xx: int = 5
    interval_s: float = 5.0
    base_ejection_time_s: float = 30.0
    max_ejection_percent: int = 50


@dataclass(frozen=True)
class Cluster:
    """One Envoy cluster per (service, version), so Envoy's stats are per version."""

    name: str
    endpoints: tuple[Endpoint, ...]
    circuit_breaker: CircuitBreakerLimits = CircuitBreakerLimits()
    outlier: OutlierPolicy | None = None
    connect_timeout_s: float = 1.0


@dataclass(frozen=True)
class Match:
    prefix: str | None = None
    path: str | None = None
    regex: str | None = None
    methods: tuple[str, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Retry:
    attempts: int = 1
    on: tuple[str, ...] = ("connect-failure", "refused-stream", "gateway-error")
    per_try_timeout_s: float | None = None


@dataclass(frozen=True)
class WeightedTarget:
    cluster: str
    weight: int
    version_label: str  # sent back to clients in x-shiploop-version


@dataclass(frozen=True)
class Assignment:
    """A sticky split of one service's units between two versions (an experiment).

    Envoy hashes `salt:unit id` (gateway/assignment.py): the same unit lands in the
    same variant whatever the weights of anything else, and after any restart."""

    salt: str  # the experiment's id: a new experiment reshuffles the units
    service: str
    unit_kind: str  # "cookie" | "header"
    unit_name: str  # the cookie or header holding the unit id
    allocation: float  # percent of units to the treatment
    control: WeightedTarget
    treatment: WeightedTarget


@dataclass(frozen=True)
class Route:
    """A match and where it goes. Routes are matched in order, first wins."""

    name: str
    match: Match
    targets: tuple[WeightedTarget, ...]
    host: str | None = None
    rewrite: str | None = None
    timeout_s: float = 15.0
    retry: Retry = Retry()
    mirrors: tuple[str, ...] = ()  # clusters that get a copy; their answers are discarded
    assignment: Assignment | None = None  # assigns units (an experiment's routes), see render.route


@dataclass(frozen=True)
class RoutingState:
    clusters: tuple[Cluster, ...] = ()
    routes: tuple[Route, ...] = ()
    listen_port: int = 8080
    listen_address: str = "127.0.0.1"
    event_log: str | None = None  # where Envoy writes experiment requests (JSON lines); None: nowhere

    def cluster_names(self) -> set[str]:
        return {c.name for c in self.clusters}

    def referenced_clusters(self) -> set[str]:
        names: set[str] = set()
        for route in self.routes:
            names.update(t.cluster for t in route.targets)
            names.update(route.mirrors)
        return names


@dataclass
class PublishResult:
    generation: int
    accepted: bool
    seconds: float
    error: str | None = None
    details: dict[str, str] = field(default_factory=dict)
