"""Per-version traffic from Envoy's per-cluster stats (one cluster per service version).

What is counted, as observed on Envoy 1.40:

- `requests` = `cluster.<c>.upstream_rq_completed`: one per downstream request
  that this cluster answered, whatever the number of attempts. Retries are
  folded in, and it includes the 503s/504s Envoy makes up itself (connect
  failure, circuit-breaker overflow, route or per-try timeout). It is the
  denominator for an error rate that matches what clients saw.
- `errors_5xx` = `cluster.<c>.upstream_rq_5xx`: the class of the *final*
  response. A retried 5xx attempt is not charged, and the made-up 503/504 are.
  Envoy creates the counter on first use, so a missing one reads as 0 while
  the cluster exists.
- `attempts` = `upstream_rq_total`: requests that reached an upstream
  connection. It is larger than `requests` under retries and smaller when
  connections fail. `retries` = `upstream_rq_retry`. Both are for diagnosis
  only.
- `latency_*` = histogram `cluster.<c>.upstream_rq_time`: recorded only for
  responses that came from the upstream (not for timeouts or connect
  failures), so `latency_total <= requests`. The buckets are Envoy's
  cumulative counts. Samples above the largest bound are not in them.

Mirrored (shadow) copies count on the shadow's own cluster, in all of the above,
and never on the primary's.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

from shiploop.gateway.admin import EnvoyAdmin

Buckets = tuple[tuple[float, int], ...]

_COUNTERS = ("upstream_rq_completed", "upstream_rq_5xx", "upstream_rq_total", "upstream_rq_retry")


@dataclass(frozen=True)
class VersionTraffic:
    requests: int = 0
    errors_5xx: int = 0
    attempts: int = 0
    retries: int = 0
    latency_buckets: Buckets = ()  # (upper bound ms, cumulative count)
    latency_total: int = 0

    @property
    def completed(self) -> int:
        """Same as `requests`: both are Envoy's `upstream_rq_completed`."""
        return self.requests


def _alternation(clusters: list[str]) -> str:
    return "|".join(re.escape(c) for c in sorted(set(clusters)))


async def read_cluster_stats(admin: EnvoyAdmin, clusters: list[str]) -> dict[str, VersionTraffic]:
    """Cumulative traffic per cluster, from two admin calls that cover every cluster.

    A cluster Envoy does not know (not yet published, or pruned) is absent from
    the result: the caller decides that this is an error, not zero traffic.
    Admin failures raise httpx errors.
    """
    if not clusters:
        return {}
    names = _alternation(clusters)
    counters, histograms = await asyncio.gather(
        admin.stats(rf"^cluster\.({names})\.({'|'.join(_COUNTERS)})$"),
        admin.histograms(rf"^cluster\.({names})\.upstream_rq_time$"),
    )
    out: dict[str, VersionTraffic] = {}
    for c in clusters:
        prefix = f"cluster.{c}."
        # upstream_rq_total is a static cluster counter, created with the
        # cluster: its absence means Envoy has no such cluster.
        if prefix + "upstream_rq_total" not in counters:
            continue
        hist = histograms.get(prefix + "upstream_rq_time")
        buckets = hist.buckets if hist is not None else ()
        out[c] = VersionTraffic(
            requests=int(counters.get(prefix + "upstream_rq_completed", 0)),
            errors_5xx=int(counters.get(prefix + "upstream_rq_5xx", 0)),
            attempts=int(counters[prefix + "upstream_rq_total"]),
            retries=int(counters.get(prefix + "upstream_rq_retry", 0)),
            latency_buckets=buckets,
            latency_total=buckets[-1][1] if buckets else 0,
        )
    return out
