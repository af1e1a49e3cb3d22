"""Routing state -> Gateway API HTTPRoutes, for clusters that run another Gateway API implementation.

One HTTPRoute per service and host; each route of the state is a rule whose
backendRefs are the versions' Services with their weights; personal (header)
routes are rules with the header match added. Retries and mirrors have no
standard (GA) field and are left out; timeouts are `timeouts.request`.
"""

from __future__ import annotations

import re
from typing import Any

from shiploop.gateway.model import Route, RoutingState
from shiploop.k8s.desired import SERVICE_PORT, version_service

API_VERSION = "gateway.networking.k8s.io/v1"


def _backend(cluster: str) -> tuple[str, str]:
    service, _, version = cluster.partition("_")  # naming.cluster_name: service names hold no "_"
    return service, version


def _path(route: Route) -> dict[str, str]:
    m = route.match
    if m.path is not None:
        return {"type": "Exact", "value": m.path}
    if m.regex is not None:
        return {"type": "RegularExpression", "value": m.regex}
    return {"type": "PathPrefix", "value": m.prefix or "/"}


def _matches(route: Route) -> list[dict[str, Any]]:
    base: dict[str, Any] = {"path": _path(route)}
    if route.match.headers:
        base["headers"] = [{"type": "Exact", "name": k, "value": v} for k, v in route.match.headers]
    if not route.match.methods:
        return [base]
    return [{**base, "method": method} for method in route.match.methods]


def _duration(seconds: float) -> str:
    ms = round(seconds * 1000)
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def _rule(route: Route) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "matches": _matches(route),
        "backendRefs": [
            {"name": version_service(*_backend(t.cluster)), "port": SERVICE_PORT, "weight": t.weight}
            for t in route.targets
        ],
        "timeouts": {"request": _duration(route.timeout_s)},
    }
    if route.rewrite is not None and route.match.prefix is not None:
        rule["filters"] = [
            {
                "type": "URLRewrite",
                "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": route.rewrite}},
            }
        ]
    return rule


def _slug(host: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", host.lower()).strip("-")


def http_routes(
    state: RoutingState, project: str, namespace: str, gateway: str, labels: dict[str, str]
) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str | None], list[Route]] = {}
    for route in state.routes:
        if not route.targets:
            continue
        service, _ = _backend(route.targets[0].cluster)
        groups.setdefault((service, route.host), []).append(route)
    out = []
    for (service, host), routes in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        name = service if host is None else f"{service}-{_slug(host)}"
        spec: dict[str, Any] = {"parentRefs": [{"name": gateway}], "rules": [_rule(r) for r in routes]}
        if host is not None:
            spec["hostnames"] = [host]
        out.append(
            {
                "apiVersion": API_VERSION,
                "kind": "HTTPRoute",
                "metadata": {
                    "name": name[:63].rstrip("-"),
                    "namespace": namespace,
                    "labels": {**labels, "shiploop.dev/service": service},
                },
                "spec": spec,
            }
        )
    return out
