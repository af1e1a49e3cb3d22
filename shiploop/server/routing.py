"""Deployments and personal routes -> the gateway's RoutingState (pure)."""

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
class ServiceRouting:
    spec: ServiceSpec  # the stable version's spec: its routes and limits apply
    placements: tuple[Placement, ...]
    header_routes: tuple[HeaderRoute, ...] = ()
    experiment: ExperimentRouting | None = None


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


def _specificity(route: Route) -> tuple[int, int]:
    # First match wins in Envoy, so personal (header) routes go first, then the
    # most specific paths: exact, longest prefix, regex.
    m = route.match
    header_rank = 0 if m.headers else 1
    if m.path is not None:
        return (header_rank, 0)
    if m.prefix is not None:
        return (header_rank, 1 + 10_000 - len(m.prefix))
    return (header_rank, 20_000)


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
    routes: list[Route] = []
    for svc in services:
        spec = svc.spec
        for p in svc.placements:
            clusters.append(_cluster(spec, p.version, endpoints(spec.name, p.version)))
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
            for j, hr in enumerate(svc.header_routes):
                personal = replace(match, headers=tuple(sorted((*match.headers, (hr.header, hr.value)))))
                target = WeightedTarget(cluster_name(spec.name, hr.version), 100, f"{spec.name}@{hr.version}")
                routes.append(
                    replace(main, name=f"{spec.name}-{i}-h{j}", match=personal, targets=(target,), mirrors=())
                )
            if assignment is not None:
                main = replace(main, assignment=assignment)
                routes.extend(_variant_routes(main, assignment))
            if weighted:
                routes.append(main)
    routes.sort(key=_specificity)  # stable sort keeps declaration order among equals
    return RoutingState(clusters=tuple(clusters), routes=tuple(routes), listen_port=listen_port, event_log=event_log)
