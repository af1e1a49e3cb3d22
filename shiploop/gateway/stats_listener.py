"""Envoy's own stats for Prometheus, without exposing the admin API.

The admin API is a 0600 unix socket (it can stop Envoy). A second listener on
127.0.0.1 forwards exactly one thing to it: `GET /metrics` (or
`/stats/prometheus`), rewritten to the admin's `/stats/prometheus`, query
string kept (Prometheus passes `filter` through it, see telemetry.targets).
Everything else answers 404 from Envoy itself and never reaches the admin API.

Per-cluster series carry `service` and `version` labels: our cluster names are
`SERVICE_VERSION` (naming.cluster_name; a service name never holds `_`), and
two stats tags cut them out of the stat names. Checked on Envoy 1.40:
`cluster.web_3f9c2a1b7d04.upstream_rq_completed` is exported as
`envoy_cluster_upstream_rq_completed{envoy_cluster_name="web_3f9c2a1b7d04",
service="web",version="3f9c2a1b7d04"}`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

LISTENER_NAME = "shiploop_stats"
# No "_" in it: the stats tags below must not read it as SERVICE_VERSION.
ADMIN_CLUSTER = "shiploop-admin"
METRICS_PATHS = ("/metrics", "/stats/prometheus")
ADMIN_PROMETHEUS_PATH = "/stats/prometheus"

_T_HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
_T_ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"

# The first group is cut out of the stat name, the second is the tag's value (Envoy's rule).
STATS_TAGS = [
    {"tag_name": "service", "regex": r"^cluster\.(([^._]+)_)[^._]+\."},
    {"tag_name": "version", "regex": r"^cluster\.[^._]+_(([^._]+)\.)"},
]


def _route(path: str) -> dict[str, Any]:
    return {
        "match": {"path": path, "headers": [{"name": ":method", "string_match": {"exact": "GET"}}]},
        "route": {"cluster": ADMIN_CLUSTER, "prefix_rewrite": ADMIN_PROMETHEUS_PATH, "timeout": "10s"},
    }


def static_resources(port: int, admin_socket: Path) -> dict[str, Any]:
    """The stats listener on 127.0.0.1:`port` and its cluster: the admin socket (a `pipe` address)."""
    not_found = {
        "match": {"prefix": "/"},
        "direct_response": {"status": 404, "body": {"inline_string": "only GET /metrics is served here\n"}},
    }
    hcm = {
        "@type": _T_HCM,
        "stat_prefix": LISTENER_NAME,
        "route_config": {
            "name": LISTENER_NAME,
            "virtual_hosts": [
                {"name": "stats", "domains": ["*"], "routes": [*(_route(p) for p in METRICS_PATHS), not_found]}
            ],
        },
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": _T_ROUTER}}],
    }
    return {
        "listeners": [
            {
                "name": LISTENER_NAME,
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                "filter_chains": [
                    {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}
                ],
            }
        ],
        "clusters": [
            {
                "name": ADMIN_CLUSTER,
                "type": "STATIC",
                "connect_timeout": "1s",
                "load_assignment": {
                    "cluster_name": ADMIN_CLUSTER,
                    "endpoints": [
                        {"lb_endpoints": [{"endpoint": {"address": {"pipe": {"path": str(admin_socket)}}}}]}
                    ],
                },
            }
        ],
    }
