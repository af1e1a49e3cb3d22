"""The daemon's /metrics: a prometheus_client Collector that reads a Snapshot on every scrape.

No background bookkeeping: each scrape asks `source()` for the state as it is
now and turns it into families. Names and labels are documented in docs/metrics.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString

from shiploop.naming import RolloutState
from shiploop.telemetry.snapshot import Snapshot

VERSION_LABELS = ["service", "version", "track"]
ROLLOUT_LABELS = ["service", "rollout", "candidate", "baseline"]
# Every outcome a decision can have (docs/metrics.md); each is exported, 0 included, so rate() sees the first one.
DECISION_OUTCOMES = ("advance", "holding", "held", "promoted", "rolled_back", "failed", "aborted")


class ShiploopCollector(Collector):
    def __init__(self, source: Callable[[], Snapshot]) -> None:
        self.source = source

    def collect(self) -> Iterable[Metric]:
        snap = self.source()
        weight = GaugeMetricFamily(
            "shiploop_route_weight_percent",
            "Percent of the service's traffic routed to the version",
            labels=VERSION_LABELS,
        )
        replicas = GaugeMetricFamily(
            "shiploop_replicas", "Replicas of the version: ready, and total", labels=[*VERSION_LABELS, "state"]
        )
        restarts = CounterMetricFamily(
            "shiploop_replica_restarts", "Restarts of the version's replicas after they exited", labels=VERSION_LABELS
        )
        for v in snap.versions:
            labels = [v.service, v.version, v.track]
            weight.add_metric(labels, v.weight)
            replicas.add_metric([*labels, "ready"], v.ready)
            replicas.add_metric([*labels, "total"], v.total)
            restarts.add_metric(labels, v.restarts)
        yield from (weight, replicas, restarts)
        yield from self._rollouts(snap)
        p = snap.publish_seconds
        publish = HistogramMetricFamily(
            "shiploop_publish_seconds", "Time from the control plane's publish call to Envoy serving the routes"
        )
        buckets = [(_bound(b), c) for b, c in zip(p.bounds, p.cumulative, strict=True)] + [("+Inf", p.count)]
        publish.add_metric([], buckets, p.total)
        yield publish
        yield CounterMetricFamily(
            "shiploop_envoy_rejections",
            "Routing generations Envoy rejected (the previous routes kept serving)",
            value=snap.envoy_rejections,
        )
        yield CounterMetricFamily(
            "shiploop_envoy_restarts",
            "Times the supervisor started Envoy again after it died",
            value=snap.envoy_restarts,
        )

    def _rollouts(self, snap: Snapshot) -> Iterable[Metric]:
        step = GaugeMetricFamily(
            "shiploop_rollout_step", "Index of the rollout's current step (0 = first)", labels=ROLLOUT_LABELS
        )
        state = GaugeMetricFamily(
            "shiploop_rollout_state",
            "1 for the rollout's current state, 0 for the others",
            labels=[*ROLLOUT_LABELS, "state"],
        )
        decisions = CounterMetricFamily(
            "shiploop_rollout_decisions", "The rollout's decisions, by outcome", labels=[*ROLLOUT_LABELS, "outcome"]
        )
        g_labels = ["service", "rollout", "guardrail"]
        estimate = GaugeMetricFamily(
            "shiploop_guardrail_estimate", "Candidate minus baseline for the guardrail's metric", labels=g_labels
        )
        lower = GaugeMetricFamily(
            "shiploop_guardrail_lower_bound", "Lower end of the estimate's anytime-valid interval", labels=g_labels
        )
        upper = GaugeMetricFamily(
            "shiploop_guardrail_upper_bound", "Upper end of the estimate's anytime-valid interval", labels=g_labels
        )
        tolerance = GaugeMetricFamily(
            "shiploop_guardrail_tolerance", "How much worse the candidate may be", labels=g_labels
        )
        for r in snap.rollouts:
            labels = [r.service, str(r.rollout), r.candidate, r.baseline]
            step.add_metric(labels, r.step)
            for s in RolloutState:
                state.add_metric([*labels, str(s)], 1.0 if s == r.state else 0.0)
            for outcome in DECISION_OUTCOMES:
                decisions.add_metric([*labels, outcome], r.decisions.get(outcome, 0))
            for g in r.guardrails:
                gl = [r.service, str(r.rollout), g.name]
                tolerance.add_metric(gl, g.tolerance)
                # A guardrail with no estimate yet (an arm without traffic) has no series, rather than a fake 0.
                for family, value in ((estimate, g.estimate), (lower, g.lower_bound), (upper, g.upper_bound)):
                    if value is not None:
                        family.add_metric(gl, value)
        yield from (step, state, decisions, estimate, lower, upper, tolerance)


def _bound(b: float) -> str:
    return repr(float(b))


def registry_for(source: Callable[[], Snapshot]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ShiploopCollector(source))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    """The Prometheus text format (version 0.0.4) of everything in `registry`: byte for byte what
    prometheus_client's `generate_latest` writes for our families (tests/unit/test_telemetry_collector.py).

    Why not `generate_latest` itself: it re-validates and re-escapes every label name of every
    sample, about 17 us a sample here; 1,000 services (4,000 version series and more) took
    0.7 s a scrape against a 50 ms target (bench/metrics_cost.py). Label names are ours and
    valid; only values need escaping, and rarely do.
    """
    out: list[str] = []
    append = out.append
    for metric in registry.collect():
        mtype = metric.type
        mname = metric.name + "_total" if mtype == "counter" else metric.name
        if mtype == "unknown":
            mtype = "untyped"
        doc = metric.documentation.replace("\\", r"\\").replace("\n", r"\n")
        append(f"# HELP {mname} {doc}\n# TYPE {mname} {mtype}\n")
        for name, labels, value, *_ in metric.samples:
            number = _NUMBERS.get(value) or _number(value)
            if labels:
                key = tuple(labels.items())
                text = _LABELS.get(key) or _labels(key)
                append(f"{name}{{{text}}} {number}\n")
            else:
                append(f"{name} {number}\n")
    return "".join(out).encode()


# Label sets and values repeat from one scrape to the next: their text is kept (bounded), which
# halves the time of a scrape at 1,000 services. What they describe is read afresh every time.
_LABELS: dict[tuple[tuple[str, str], ...], str] = {}
_NUMBERS: dict[float, str] = {}
_KEPT = 100_000


def _labels(key: tuple[tuple[str, str], ...]) -> str:
    if len(_LABELS) > _KEPT:
        _LABELS.clear()
    text = _LABELS[key] = ",".join([f'{k}="{_escape(v)}"' for k, v in sorted(key)])
    return text


def _number(value: float) -> str:
    if len(_NUMBERS) > _KEPT:
        _NUMBERS.clear()
    text = _NUMBERS[value] = floatToGoString(value)
    return text


_NEEDS_ESCAPE = re.compile(r'[\\\n"]')


def _escape(value: str) -> str:
    if _NEEDS_ESCAPE.search(value) is None:
        return value
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"')
