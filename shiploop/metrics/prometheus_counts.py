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

So the query asks for the raw cumulative values, not `increase()`: the
controller takes differences between readings itself, as it does with Envoy's
(see docs/decisions.md). It asks for the raw samples of the last few scrapes (a
range selector), because the two versions come from two targets (one per
track) that Prometheus scrapes at different moments of its interval: the
candidate's latest scrape can be seconds newer or older than the baseline's, and
which one is newer changes from read to read. Counts taken that way cover
windows of different lengths for the two versions, which the sample-ratio test
sees as a wrong split (measured in tests/unit/test_prometheus_source.py). So
every version is read at its latest scrape at or before the *anchor's* (the
baseline's) latest scrape: the offset between the versions is then the same at
every read, and a delta covers the same length of time for both.

App counters come from the replicas' own /metrics series, summed over the
replicas that are up (as the embedded reader sums the replicas that answered);
a replica target that is down is named, since a sum without it is no count.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from shiploop.metrics.envoy_source import VersionTraffic
from shiploop.metrics.prometheus_api import Series

REQUESTS = "envoy_cluster_upstream_rq_completed"
RESPONSES = "envoy_cluster_upstream_rq_xx"
LATENCY_BUCKETS = "envoy_cluster_upstream_rq_time_bucket"


def _quote(text: str) -> str:
    """A PromQL string literal (Go's escaping, which JSON's matches for these texts)."""
    return json.dumps(text)


def _selector(project: str, service: str, versions: Iterable[str]) -> str:
    alternation = "|".join(re.escape(v) for v in sorted(set(versions)))
    return f"project={_quote(project)},service={_quote(service)},version=~{_quote(alternation)}"


def traffic_query(project: str, service: str, versions: Sequence[str], window_s: float) -> str:
    """One query: the raw samples of requests, 5xx and latency buckets per version over the last `window_s`."""
    sel = _selector(project, service, versions)
    names = "|".join((REQUESTS, RESPONSES, LATENCY_BUCKETS))
    # envoy_response_code_class=~"5|": the 5xx series, and every series without the label.
    return f'{{__name__=~{_quote(names)},{sel},envoy_response_code_class=~"5|"}}[{int(math.ceil(window_s))}s]'


@dataclass(frozen=True)
class SampledTraffic:
    traffic: VersionTraffic
    sampled_at: float  # unix seconds of the scrape the counts come from


def _at(points: Iterable[tuple[float, float]], t: float) -> tuple[float, float] | None:
    """The latest sample at or before `t`."""
    best = None
    for at, value in points:
        if at <= t and (best is None or at > best[0]):
            best = (at, value)
    return best


def aligned_traffic(series: Sequence[Series], anchor: str) -> dict[str, SampledTraffic]:
    """Per version: its counts at its latest scrape at or before the anchor version's latest scrape.

    A version with no request sample by then is absent (so is every version, if the anchor
    has none). A version's series from two targets (a promotion moves it from the canary
    target to the stable one; same counter) are merged by taking the larger value.
    """
    by_key: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
    for s in series:
        version, name = s.labels.get("version"), s.labels.get("__name__", "")
        if version is None:
            continue
        if name == RESPONSES and s.labels.get("envoy_response_code_class") != "5":
            continue
        le = s.labels.get("le", "")
        if name == LATENCY_BUCKETS and le in ("", "+Inf"):
            continue
        by_key.setdefault((version, name, le), []).extend(s.points)
    anchor_points = by_key.get((anchor, REQUESTS, ""))
    if not anchor_points:
        return {}
    until = max(at for at, _ in anchor_points)
    out: dict[str, SampledTraffic] = {}
    versions = {v for v, _, _ in by_key}
    for version in sorted(versions):
        requests = _at(by_key.get((version, REQUESTS, ""), []), until)
        if requests is None:
            continue
        sampled_at = requests[0]
        # Every series of one version comes from the same target and scrape: read them at its time.
        errors = _at(by_key.get((version, RESPONSES, ""), []), sampled_at)
        buckets = []
        for (v, name, le), points in by_key.items():
            if v == version and name == LATENCY_BUCKETS:
                got = _at(points, sampled_at)
                if got is not None:
                    buckets.append((float(le), int(got[1])))
        ordered = tuple(sorted(buckets))
        traffic = VersionTraffic(
            requests=int(requests[1]),
            # Envoy creates the 5xx counter at the first 5xx: no sample by then is 0 errors.
            errors_5xx=int(errors[1]) if errors is not None else 0,
            latency_buckets=ordered,
            latency_total=ordered[-1][1] if ordered else 0,
        )
        out[version] = SampledTraffic(traffic, sampled_at)
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


def parse_app(samples: Sequence[Series]) -> AppCounts:
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
