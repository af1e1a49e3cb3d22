"""PromQL over the series shiploop exposes (docs/metrics.md), shared by the Grafana dashboards
(telemetry.grafana) and the alert rules (telemetry.alerts).

Requests, 5xx and latency come from Envoy's per-cluster stats: what the rollouts count,
answers Envoy gave on the upstream's behalf (503, 504) included. `match` is the inside of a
label matcher (`service=~"$service"`), `by` the labels to keep, `window` a range (`5m`,
`$__rate_interval`).
"""

from __future__ import annotations

REQUESTS = "envoy_cluster_upstream_rq_completed"
BY_CLASS = "envoy_cluster_upstream_rq_xx"
LATENCY_BUCKETS = "envoy_cluster_upstream_rq_time_bucket"  # milliseconds
# Cluster stats come only from the per-track Envoy targets; the filter keeps a selector
# honest should a cluster stat ever reach the untracked target too.
CLUSTER = 'track!=""'
FIVE_XX = 'envoy_response_code_class="5"'


def _matchers(match: str, *more: str) -> str:
    cluster = "" if "track" in match else CLUSTER
    return ",".join(m for m in (cluster, match, *more) if m)


def request_rate(match: str, by: str, window: str) -> str:
    """Requests per second answered, per `by`."""
    return f"sum by ({by}) (rate({REQUESTS}{{{_matchers(match)}}}[{window}]))"


def error_share(match: str, by: str, window: str) -> str:
    """Share of answers that were 5xx, per `by`; 0 (not missing) for a version without any 5xx.

    Envoy creates a response-class counter at the first answer of that class, so a healthy
    version has no class-5 series at all: `or 0 * requests` gives it a 0 to draw and compare.
    """
    errors = f"sum by ({by}) (rate({BY_CLASS}{{{_matchers(match, FIVE_XX)}}}[{window}]))"
    requests = request_rate(match, by, window)
    return f"({errors} or 0 * {requests}) / {requests}"


def latency_quantile(quantile: float, match: str, by: str, window: str) -> str:
    """The quantile of upstream latency in milliseconds, per `by`, from Envoy's histogram."""
    buckets = f"sum by ({by}, le) (rate({LATENCY_BUCKETS}{{{_matchers(match)}}}[{window}]))"
    return f"histogram_quantile({quantile:g}, {buckets})"
