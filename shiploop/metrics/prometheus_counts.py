"""The rollouts' counts as PromQL: the same Envoy counters the embedded reader takes, as Prometheus stored them.

The embedded reader (`envoy_source`) reads Envoy's cumulative per-cluster
counters; Envoy's stats listener exposes the very same counters (docs/metrics.md):

- requests: `envoy_cluster_upstream_rq_completed` (Envoy's `upstream_rq_completed`);
- errors: `envoy_cluster_upstream_rq_xx{envoy_response_code_class="5"}`, which is
  Envoy's `upstream_rq_5xx` cut into a name and a tag (the class of the *final*
  answer: a retried 5xx attempt is not charged, as in the embedded reader);
- latency: `envoy_cluster_upstream_rq_time_bucket`, the `upstream_rq_time`
  histogram's cumulative buckets (`le` in ms; `+Inf` left out, as Envoy's admin
  JSON has no such bucket).

So the queries ask for the raw cumulative values at the latest scrape, not
`increase()`: the controller takes differences between readings itself, as it
does with Envoy's (see docs/decisions.md). `max by (version)` because a
version's series can come from two targets for a moment (a promotion moves it
from the canary target to the stable one; the counter is the same).

Each query also returns, per version, the time of the scrape the values come
from (label `shiploop_sample="time"`), so a caller can tell stale counts.
App counters come from the replicas' own /metrics series, summed over the
replicas that are up (as the embedded reader sums the replicas that answered);
a replica target that is down is named, since a sum without it is no count.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from shiploop.metrics.envoy_source import VersionTraffic
from shiploop.metrics.prometheus_api import VectorSample

REQUESTS = "envoy_cluster_upstream_rq_completed"
RESPONSES = "envoy_cluster_upstream_rq_xx"
LATENCY_BUCKETS = "envoy_cluster_upstream_rq_time_bucket"
SAMPLE_TIME = "shiploop_sample"  # the label marking the per-version scrape-time series


def _quote(text: str) -> str:
    """A PromQL string literal (Go's escaping, which JSON's matches for these texts)."""
    return json.dumps(text)


def _selector(project: str, service: str, versions: Iterable[str]) -> str:
    alternation = "|".join(re.escape(v) for v in sorted(set(versions)))
    return f"project={_quote(project)},service={_quote(service)},version=~{_quote(alternation)}"


def traffic_query(project: str, service: str, versions: Sequence[str]) -> str:
    """One query: requests, 5xx and latency buckets per version, and each version's scrape time."""
    sel = _selector(project, service, versions)
    names = "|".join((REQUESTS, RESPONSES, LATENCY_BUCKETS))
    # envoy_response_code_class=~"5|": the 5xx series, and every series without the label.
    values = (
        f'max by (__name__, version, envoy_response_code_class, le) '
        f'({{__name__=~{_quote(names)},{sel},envoy_response_code_class=~"5|"}})'
    )
    times = f"max by (version) (timestamp({REQUESTS}{{{sel}}}))"
    # `or` keeps the right side's series: their label sets (version, shiploop_sample) match none on the left.
    return f'{values} or label_replace({times}, "{SAMPLE_TIME}", "time", "", "")'


@dataclass(frozen=True)
class SampledTraffic:
    traffic: VersionTraffic
    sampled_at: float  # unix seconds of the scrape the counts come from


def parse_traffic(samples: Sequence[VectorSample]) -> dict[str, SampledTraffic]:
    """Per version with a request series: its counts and scrape time. A version without one is absent."""
    requests: dict[str, float] = {}
    errors: dict[str, float] = {}
    times: dict[str, float] = {}
    buckets: dict[str, dict[float, float]] = {}
    for s in samples:
        version = s.labels.get("version")
        if version is None:
            continue
        name = s.labels.get("__name__")
        if s.labels.get(SAMPLE_TIME) == "time":
            times[version] = s.value
        elif name == REQUESTS:
            requests[version] = s.value
        elif name == RESPONSES and s.labels.get("envoy_response_code_class") == "5":
            errors[version] = s.value
        elif name == LATENCY_BUCKETS and "le" in s.labels and s.labels["le"] != "+Inf":
            buckets.setdefault(version, {})[float(s.labels["le"])] = s.value
    out: dict[str, SampledTraffic] = {}
    for version, count in requests.items():
        ordered = tuple((ub, int(c)) for ub, c in sorted(buckets.get(version, {}).items()))
        traffic = VersionTraffic(
            requests=int(count),
            # Envoy creates the 5xx counter at the first 5xx: no series while the version exists is 0.
            errors_5xx=int(errors.get(version, 0)),
            latency_buckets=ordered,
            latency_total=ordered[-1][1] if ordered else 0,
        )
        out[version] = SampledTraffic(traffic, times.get(version, 0.0))
    return out


def app_query(project: str, service: str, versions: Sequence[str], names: Iterable[str]) -> str:
    """The app counters `names` per version, summed over replicas and label sets; and replica targets down."""
    sel = _selector(project, service, versions)
    wanted = "|".join(sorted(set(names)))
    counters = f"sum by (__name__, version) ({{__name__=~{_quote(wanted)},{sel}}})"
    # Only replica targets carry `service` and `version` on `up` (Envoy's have a track at most).
    return f"{counters} or (up{{{sel}}} == 0)"


@dataclass(frozen=True)
class AppCounts:
    counters: dict[str, dict[str, float]]  # version -> counter name -> value
    down: list[str] = field(default_factory=list)  # one line per replica target Prometheus could not scrape


def parse_app(samples: Sequence[VectorSample]) -> AppCounts:
    counters: dict[str, dict[str, float]] = {}
    down: list[str] = []
    for s in samples:
        version = s.labels.get("version", "")
        name = s.labels.get("__name__", "")
        if name == "up":
            where = s.labels.get("instance", "?")
            down.append(f"{version}: replica {s.labels.get('replica', '?')} at {where}: down in prometheus")
        elif name:
            counters.setdefault(version, {})[name] = s.value
    return AppCounts(counters, sorted(down))
