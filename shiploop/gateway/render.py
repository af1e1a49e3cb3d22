"""RoutingState -> Envoy v3 xDS resources (as plain dicts, written as JSON files).

Names: the listener is `gateway`, its route configuration is `gateway`, so the
stats are `http.gateway.*` and `http.gateway.rds.gateway.*`.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

from shiploop.gateway import assignment, stats_listener
from shiploop.gateway.model import Cluster, Route, RoutingState

LISTENER_NAME = "gateway"
ROUTE_CONFIG_NAME = "gateway"
VERSION_HEADER = "x-shiploop-version"

_T_CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
_T_LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
_T_ROUTES = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
_T_HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
_T_ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
_T_PREVIOUS_HOSTS = "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"

# Latency buckets (ms) for per-cluster histograms. Envoy's defaults jump from 5
# to 10 to 25 ms; canary latency analysis needs finer steps at the low end.
HISTOGRAM_BUCKETS_MS = [
    0.5,
    1,
    2,
    3,
    5,
    7.5,
    10,
    15,
    20,
    30,
    40,
    50,
    75,
    100,
    150,
    200,
    300,
    400,
    500,
    750,
    1000,
    1500,
    2000,
    3000,
    5000,
    10000,
    30000,
    60000,
]


def _duration(seconds: float) -> str:
    return f"{seconds:.3f}s"


def file_source(path: Path, watched: Path) -> dict[str, Any]:
    return {
        "resource_api_version": "V3",
        "path_config_source": {"path": str(path), "watched_directory": {"path": str(watched)}},
    }


def bootstrap(xds_dir: Path, admin_socket: Path, node_id: str, stats_port: int | None = None) -> dict[str, Any]:
    current = xds_dir / "current"
    out: dict[str, Any] = {
        "node": {"id": node_id, "cluster": "shiploop"},
        # The admin API can stop Envoy (/quitquitquit) and read every stat: on a
        # TCP port any local user could; a 0600 socket in a 0700 directory is ours alone.
        "admin": {"address": {"pipe": {"path": str(admin_socket), "mode": 0o600}}},
        # Histograms are merged into the admin view on each /stats read, so the
        # controller sees fresh latency every second without a flush timer.
        "stats_flush_on_admin": True,
        "stats_config": {
            "histogram_bucket_settings": [{"match": {"prefix": "cluster."}, "buckets": HISTOGRAM_BUCKETS_MS}],
            "stats_tags": stats_listener.STATS_TAGS,
        },
        "dynamic_resources": {
            "cds_config": file_source(current / "cds.json", xds_dir),
            "lds_config": file_source(current / "lds.json", xds_dir),
        },
    }
    if stats_port is not None:
        out["static_resources"] = stats_listener.static_resources(stats_port, admin_socket)
    return out


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def cluster(c: Cluster) -> dict[str, Any]:
    cb = c.circuit_breaker
    out: dict[str, Any] = {
        "@type": _T_CLUSTER,
        "name": c.name,
        # Local replicas are IP:port; in a cluster a version is a Service's DNS name,
        # which Envoy resolves itself (and again when it changes).
        "type": "STATIC" if all(_is_ip(e.host) for e in c.endpoints) else "STRICT_DNS",
        "connect_timeout": _duration(c.connect_timeout_s),
        "lb_policy": "ROUND_ROBIN",
        "load_assignment": {
            "cluster_name": c.name,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {"endpoint": {"address": {"socket_address": {"address": e.host, "port_value": e.port}}}}
                        for e in c.endpoints
                    ]
                }
            ],
        },
        "circuit_breakers": {
            "thresholds": [
                {
                    "priority": "DEFAULT",
                    "max_connections": cb.max_connections,
                    "max_pending_requests": cb.max_pending_requests,
                    "max_requests": cb.max_requests,
                    "max_retries": cb.max_retries,
                }
            ]
        },
    }
    if c.outlier is not None:
        o = c.outlier
        out["outlier_detection"] = {
            "consecutive_5xx": o.consecutive_5xx,
            "interval": _duration(o.interval_s),
            "base_ejection_time": _duration(o.base_ejection_time_s),
            "max_ejection_percent": o.max_ejection_percent,
        }
    return out


def _route_match(r: Route) -> dict[str, Any]:
    m = r.match
    match: dict[str, Any]
    if m.path is not None:
        match = {"path": m.path}
    elif m.regex is not None:
        match = {"safe_regex": {"regex": m.regex}}
    else:
        match = {"prefix": m.prefix or "/"}
    headers = [{"name": name, "string_match": {"exact": value}} for name, value in m.headers]
    if m.methods:
        alternatives = "|".join(m.methods)
        headers.append({"name": ":method", "string_match": {"safe_regex": {"regex": f"^({alternatives})$"}}})
    if headers:
        match["headers"] = headers
    return match


def _version_header(label: str) -> list[dict[str, Any]]:
    return [{"header": {"key": VERSION_HEADER, "value": label}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]


def route(r: Route) -> dict[str, Any]:
    action: dict[str, Any] = {"timeout": _duration(r.timeout_s)}
    live = [t for t in r.targets if t.weight > 0]
    out: dict[str, Any] = {"name": r.name, "match": _route_match(r)}
    if len(live) == 1:
        action["cluster"] = live[0].cluster
        out["response_headers_to_add"] = _version_header(live[0].version_label)
    else:
        action["weighted_clusters"] = {
            "clusters": [
                {
                    "name": t.cluster,
                    "weight": t.weight,
                    "response_headers_to_add": _version_header(t.version_label),
                }
                for t in live
            ]
        }
    if r.rewrite is not None:
        action["prefix_rewrite"] = r.rewrite
    if r.retry.attempts > 0:
        policy: dict[str, Any] = {
            "retry_on": ",".join(r.retry.on),
            "num_retries": r.retry.attempts,
            # A retry goes to another replica: the one that just failed (killed,
            # restarting) is likely to fail again. Measured, 10 replica kill -9s under
            # 100 rps with 2 replicas: 12 requests lost (503, the retry met the same
            # dead replica) with plain round robin; none with this.
            "retry_host_predicate": [
                {"name": "envoy.retry_host_predicates.previous_hosts", "typed_config": {"@type": _T_PREVIOUS_HOSTS}}
            ],
            "host_selection_retry_max_attempts": 3,
        }
        if r.retry.per_try_timeout_s:
            policy["per_try_timeout"] = _duration(r.retry.per_try_timeout_s)
        action["retry_policy"] = policy
    if r.mirrors:
        action["request_mirror_policies"] = [
            {"cluster": name, "runtime_fraction": {"default_value": {"numerator": 100, "denominator": "HUNDRED"}}}
            for name in r.mirrors
        ]
    out["route"] = action
    if r.assignment is not None:
        out["typed_per_filter_config"] = assignment.per_route_config(r.assignment)
    return out


def route_configuration(state: RoutingState) -> dict[str, Any]:
    # One virtual host per distinct host match, the catch-all last. Within a
    # host, the given route order holds (header routes come first by contract).
    hosts: dict[str, list[Route]] = {}
    for r in state.routes:
        hosts.setdefault(r.host or "*", []).append(r)
    vhosts = []
    for host in sorted(hosts, key=lambda h: h == "*"):
        routes = [route(r) for r in hosts[host] if any(t.weight > 0 for t in r.targets)]
        name = "any" if host == "*" else host
        vhosts.append({"name": name, "domains": [host] if host == "*" else [host, f"{host}:*"], "routes": routes})
    return {"@type": _T_ROUTES, "name": ROUTE_CONFIG_NAME, "virtual_hosts": vhosts}


def listener(state: RoutingState, xds_dir: Path) -> dict[str, Any]:
    hcm = {
        "@type": _T_HCM,
        "stat_prefix": LISTENER_NAME,
        "rds": {
            "route_config_name": ROUTE_CONFIG_NAME,
            "config_source": file_source(xds_dir / "current" / "rds.json", xds_dir),
        },
        # The Lua filter acts only on routes that carry a script (experiments, see
        # gateway/assignment.py); it is always here so the listener never changes
        # (a changed listener drains every connection) when an experiment starts.
        "http_filters": [
            assignment.lua_filter(),
            {"name": "envoy.filters.http.router", "typed_config": {"@type": _T_ROUTER}},
        ],
    }
    if state.event_log is not None:
        hcm["access_log"] = [assignment.access_log(state.event_log)]
    out = {
        "@type": _T_LISTENER,
        "name": LISTENER_NAME,
        "address": {"socket_address": {"address": state.listen_address, "port_value": state.listen_port}},
        "filter_chains": [
            {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}
        ],
    }
    if state.listen_address not in ("127.0.0.1", "0.0.0.0", "::"):
        # A shared host's address (--listen): the host's own CLI and checks keep 127.0.0.1.
        local = {"socket_address": {"address": "127.0.0.1", "port_value": state.listen_port}}
        out["additional_addresses"] = [{"address": local}]
    return out


def discovery_response(version: str, resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {"version_info": version, "resources": resources}
