"""The desired routing state as a JSON document: what the cluster keeps (a ConfigMap's `routing.json`).

It is the gateway's own RoutingState (shiploop/gateway/model.py), field for
field, so the in-pod agent renders it with the same code as the local gateway.
A weight change is an edit of `routes[].targets[].weight` in this document.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from shiploop.errors import Invalid
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

SCHEMA = "shiploop.dev/routing-state/v1"


def to_document(state: RoutingState) -> dict[str, Any]:
    return {"schema": SCHEMA, **asdict(state)}


def dumps(state: RoutingState) -> str:
    return json.dumps(to_document(state), indent=1, sort_keys=True) + "\n"


def _tuple(items: Any) -> tuple[Any, ...]:
    return tuple(tuple(i) if isinstance(i, list) else i for i in items)


def _cluster(d: dict[str, Any]) -> Cluster:
    return Cluster(
        name=d["name"],
        endpoints=tuple(Endpoint(**e) for e in d["endpoints"]),
        circuit_breaker=CircuitBreakerLimits(**d.get("circuit_breaker", {})),
        outlier=OutlierPolicy(**d["outlier"]) if d.get("outlier") else None,
        connect_timeout_s=d.get("connect_timeout_s", 1.0),
    )


def _route(d: dict[str, Any]) -> Route:
    m = d["match"]
    match = Match(
        prefix=m.get("prefix"),
        path=m.get("path"),
        regex=m.get("regex"),
        methods=tuple(m.get("methods", ())),
        headers=tuple((k, v) for k, v in m.get("headers", ())),
    )
    r = d.get("retry", {})
    retry = Retry(r.get("attempts", 1), tuple(r.get("on", Retry().on)), r.get("per_try_timeout_s"))
    return Route(
        name=d["name"],
        match=match,
        targets=tuple(WeightedTarget(**t) for t in d["targets"]),
        host=d.get("host"),
        rewrite=d.get("rewrite"),
        timeout_s=d.get("timeout_s", 15.0),
        retry=retry,
        mirrors=tuple(d.get("mirrors", ())),
        assignment=_assignment(d["assignment"]) if d.get("assignment") else None,
    )


def _assignment(d: dict[str, Any]) -> Assignment:
    return Assignment(
        salt=d["salt"],
        service=d["service"],
        unit_kind=d["unit_kind"],
        unit_name=d["unit_name"],
        allocation=float(d["allocation"]),
        control=WeightedTarget(**d["control"]),
        treatment=WeightedTarget(**d["treatment"]),
    )


def from_document(doc: Any, where: str = "routing state") -> RoutingState:
    """A RoutingState from the document; any mistake is one Invalid line naming `where`."""
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise Invalid(f"not a routing-state document (schema {SCHEMA!r} expected)", where=where)
    try:
        return RoutingState(
            clusters=tuple(_cluster(c) for c in doc.get("clusters", ())),
            routes=tuple(_route(r) for r in doc.get("routes", ())),
            listen_port=int(doc.get("listen_port", 8080)),
            listen_address=str(doc.get("listen_address", "0.0.0.0")),
            event_log=doc.get("event_log"),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise Invalid(f"malformed routing-state document ({type(e).__name__}: {e})", where=where) from None


def loads(text: str, where: str = "routing state") -> RoutingState:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise Invalid(f"not JSON: {e}", where=where) from None
    return from_document(doc, where)


def check(state: RoutingState, where: str = "routing state") -> None:
    """Every route's targets name a cluster of the document, with weights 0..100 that do not all vanish."""
    names = state.cluster_names()
    for route in state.routes:
        for t in route.targets:
            if t.cluster not in names:
                raise Invalid(f"route {route.name} sends to unknown cluster {t.cluster!r}", where=where)
            if not 0 <= t.weight <= 100:
                raise Invalid(f"route {route.name}: weight {t.weight} of {t.cluster} is not 0..100", where=where)
