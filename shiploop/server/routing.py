"""Deployments and personal routes -> the gateway's RoutingState (pure).

Intercepts (a developer's own process, held by a lease: server/intercepts.py)
get a cluster of their own, never a version's: a rollout judges each version
by its cluster's counters in Envoy, so traffic a personal route takes is never
counted as the stable's or the candidate's. Their routes come before the
weighted ones, so a rollout's weights apply to the traffic no personal route matched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from shiploop.gateway.assignment import CONTROL, TREATMENT, VARIANT_HEADER, variant_value
from shiploop.gateway.model import (
    Assignment,
    CircuitBreakerLimits,
    Cluster,
    Endpoint,
    Match,
    OutlierPolicy,
    Retry,
    Route,
    RoutingState,
    WeightedTarget,
)
from shiploop.naming import Track, cluster_name
from shiploop.spec import ServiceSpec


@dataclass(frozen=True)
class Placement:
    """One running version of a service and its place in the router."""

    version: str
    track: str
    weight: int


@dataclass(frozen=True)
class HeaderRoute:
    header: str
    value: str
    version: str


@dataclass(frozen=True)
class ExperimentRouting:
    """A running experiment: units split between two deployed versions by a hash in Envoy."""

    salt: str
    unit_kind: str  # "cookie" | "header"
    unit_name: str
    allocation: float  # percent of units to the treatment
    control: str  # versions
    treatment: str


@dataclass(frozen=True)
class PersonalRoute:
    """An intercept: requests carrying `header: value` (every request when header is "") go to host:port."""

    id: str
    header: str
    value: str
    host: str
    port: int
    kind: str = "intercept"


def personal_cluster_name(service: str, intercept_id: str) -> str:
    # Like naming.cluster_name, SERVICE_REST, so stats tags still read the service; the
    # "intercept-" prefix can never be a version id (those are hex).
    return f"{service}_intercept-{intercept_id}"


def personal_label(service: str, route: PersonalRoute) -> str:
    """What the personal route sends back in x-shiploop-version: which process answered."""
    return f"{service}@{route.kind}:{route.host}:{route.port}"


@dataclass(frozen=True)
class ServiceRouting:
    spec: ServiceSpec  # the stable version's spec: its routes and limits apply
    placements: tuple[Placement, ...]
    header_routes: tuple[HeaderRoute, ...] = ()
    experiment: ExperimentRouting | None = None
    personal: tuple[PersonalRoute, ...] = ()


def _cluster(spec: ServiceSpec, version: str, ports: list[int]) -> Cluster:
    cb = spec.circuit_breaker
    od = spec.outlier_detection
    outlier = None
    if od.enabled:
        outlier = OutlierPolicy(od.consecutive_5xx, od.interval, od.base_ejection_time, od.max_ejection_percent)
    return Cluster(
        cluster_name(spec.name, version),
        tuple(Endpoint("127.0.0.1", p) for p in ports),
        CircuitBreakerLimits(cb.max_connections, cb.max_pending_requests, cb.max_requests, cb.max_retries),
        outlier,
    )


# On the same match an intercept comes before a header route, which comes before the weighted route.
PERSONAL, HEADER, WEIGHTED = 0, 1, 2


def _specificity(ranked: tuple[Route, int]) -> tuple[int, int, int]:
    # First match wins in Envoy, so personal (header) routes go first, then the
    # most specific paths: exact, longest prefix, regex.
    route, kind = ranked
    m = route.match
    header_rank = 0 if m.headers else 1
    if m.path is not None:
        return (header_rank, 0, kind)
    if m.prefix is not None:
        return (header_rank, 1 + 10_000 - len(m.prefix), kind)
    return (header_rank, 20_000, kind)


def _personal_cluster(service: str, p: PersonalRoute) -> Cluster:
    # No outlier detection: a developer's one process stopped at a breakpoint must not be ejected.
    return Cluster(personal_cluster_name(service, p.id), (Endpoint(p.host, p.port),))


def _assignment(svc: ServiceRouting) -> Assignment | None:
    exp = svc.experiment
    tracks = {p.version: p.track for p in svc.placements}
    # Only while control is stable and treatment the canary: a promote or rollback (by the
    # experiment or by hand) ends the split in the same publish that moves the tracks.
    if exp is None or tracks.get(exp.control) != Track.STABLE or tracks.get(exp.treatment) != Track.CANARY:
        return None
    name = svc.spec.name
    return Assignment(
        exp.salt,
        name,
        exp.unit_kind,
        exp.unit_name,
        exp.allocation,
        WeightedTarget(cluster_name(name, exp.control), 100, f"{name}@{exp.control}"),
        WeightedTarget(cluster_name(name, exp.treatment), 100, f"{name}@{exp.treatment}"),
    )


def _variant_routes(main: Route, assignment: Assignment) -> list[Route]:
    """The routes a unit's variant header leads to: the main route's match plus that header.

    The main route and these carry the assignment script, which sets the header from the
    unit's hash (a client's own value is overwritten) and has Envoy match again."""
    out = []
    for arm, target in ((TREATMENT, assignment.treatment), (CONTROL, assignment.control)):
        header = (VARIANT_HEADER, variant_value(assignment.service, arm))
        match = replace(main.match, headers=tuple(sorted((*main.match.headers, header))))
        out.append(replace(main, name=f"{main.name}-{arm}", match=match, targets=(target,), assignment=assignment))
    return out


def build_routing_state(
    services: list[ServiceRouting],
    endpoints: Callable[[str, str], list[int]],
    listen_port: int,
    event_log: str | None = None,
) -> RoutingState:
    clusters: list[Cluster] = []
    routes: list[tuple[Route, int]] = []
    for svc in services:
        spec = svc.spec
        for p in svc.placements:
            clusters.append(_cluster(spec, p.version, endpoints(spec.name, p.version)))
        clusters.extend(_personal_cluster(spec.name, pr) for pr in svc.personal)
        weighted = tuple(
            WeightedTarget(cluster_name(spec.name, p.version), p.weight, f"{spec.name}@{p.version}")
            for p in svc.placements
            if p.track != Track.SHADOW and p.weight > 0
        )
        mirrors = tuple(cluster_name(spec.name, p.version) for p in svc.placements if p.track == Track.SHADOW)
        assignment = _assignment(svc)
        for i, rs in enumerate(spec.routes):
            match = Match(
                prefix=rs.prefix,
                path=rs.path,
                regex=rs.regex,
                methods=tuple(rs.methods or ()),
                headers=tuple(sorted(rs.headers.items())),
            )
            retry = Retry(rs.retries.attempts, tuple(rs.retries.on), rs.retries.per_try_timeout)
            main = Route(
                f"{spec.name}-{i}",
                match,
                weighted,
                host=rs.host,
                rewrite=rs.rewrite,
                timeout_s=rs.timeout,
                retry=retry,
                mirrors=mirrors,
            )
            for pr in svc.personal:
                headers = match.headers if not pr.header else tuple(sorted((*match.headers, (pr.header, pr.value))))
                target = WeightedTarget(personal_cluster_name(spec.name, pr.id), 100, personal_label(spec.name, pr))
                own = replace(main, name=f"{spec.name}-{i}-p{pr.id}", match=replace(match, headers=headers))
                routes.append((replace(own, targets=(target,), mirrors=()), PERSONAL))
            for j, hr in enumerate(svc.header_routes):
                personal = replace(match, headers=tuple(sorted((*match.headers, (hr.header, hr.value)))))
                target = WeightedTarget(cluster_name(spec.name, hr.version), 100, f"{spec.name}@{hr.version}")
                routes.append(
                    (replace(main, name=f"{spec.name}-{i}-h{j}", match=personal, targets=(target,), mirrors=()), HEADER)
                )
            if assignment is not None:
                main = replace(main, assignment=assignment)
                # After the header routes of the same match, as before personal routes existed.
                routes.extend((r, HEADER) for r in _variant_routes(main, assignment))
            if weighted:
                routes.append((main, WEIGHTED))
    routes.sort(key=_specificity)  # stable sort keeps declaration order among equals
    return RoutingState(
        clusters=tuple(clusters), routes=tuple(r for r, _ in routes), listen_port=listen_port, event_log=event_log
    )
