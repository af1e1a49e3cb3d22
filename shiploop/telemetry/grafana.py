"""Grafana dashboards for a project (`shiploop dashboards export`), built with grafana-foundation-sdk.

One overview of every service, and one dashboard per service. Every panel reads a
Prometheus that scrapes the project as `shiploop prometheus-config` says, through a
`datasource` variable (any Prometheus data source of the Grafana they are imported
into), and filters by the `project`, `service` and `version` variables. Every panel's
PromQL is in the tables below (OVERVIEW, SERVICE, DECISIONS), written once; the builder
only lays them out.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from grafana_foundation_sdk.builders import dashboard as d
from grafana_foundation_sdk.builders import prometheus, table, timeseries
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DashboardLinkType,
    DataSourceRef,
    VariableModel,
    VariableOption,
    VariableRefresh,
    VariableSort,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from shiploop.telemetry.promql import error_share, latency_quantile, request_rate
from shiploop.telemetry.scrape_config import JOB_REPLICAS

# Grafana's own interval for rate(): at least four scrape intervals, so a rate always has two samples.
RATE = "$__rate_interval"
P = 'project=~"$project"'
PS = f'{P},service=~"$service"'
PSV = f'{PS},version=~"$version"'
DATASOURCE = "${datasource}"
TAGS = ["shiploop"]

PanelKind = Literal["timeseries", "table"]


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class PanelSpec:
    title: str
    description: str
    queries: tuple[Query, ...]
    unit: str = "short"
    kind: PanelKind = "timeseries"
    # One series per version of the service: a version serving traffic must show in it.
    per_version: bool = False
    repeat: str | None = None  # a variable: one copy of the panel per selected value
    width: int = 12
    max: float | None = None


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[PanelSpec, ...] = field(default_factory=tuple)


def _latencies(match: str, by: str, legend: str) -> tuple[Query, ...]:
    return tuple(Query(latency_quantile(q, match, by, RATE), f"{legend} p{round(q * 100)}") for q in (0.5, 0.95, 0.99))


OVERVIEW: tuple[Row, ...] = (
    Row(
        "Traffic per version",
        (
            PanelSpec(
                "Requests per second",
                "Requests Envoy answered per version (retries folded in, its own 503/504 included).",
                (Query(request_rate(PSV, "service, version", RATE), "{{service}} {{version}}"),),
                unit="reqps",
                per_version=True,
            ),
            PanelSpec(
                "5xx share",
                "Share of answers that were 5xx, per version: what the rollouts count as errors.",
                (Query(error_share(PSV, "service, version", RATE), "{{service}} {{version}}"),),
                unit="percentunit",
                per_version=True,
            ),
            PanelSpec(
                "Latency p95",
                "95th percentile of upstream latency per version (Envoy's histogram).",
                (Query(latency_quantile(0.95, PSV, "service, version", RATE), "{{service}} {{version}}"),),
                unit="ms",
                per_version=True,
            ),
            PanelSpec(
                "Route weights",
                "Percent of each service's traffic every version gets (a shadow's 0: it gets copies).",
                (Query(f"shiploop_route_weight_percent{{{PSV}}}", "{{service}} {{version}} ({{track}})"),),
                unit="percent",
                per_version=True,
                max=100,
            ),
        ),
    ),
    Row(
        "Rollouts",
        (
            PanelSpec(
                "Rollouts now",
                "Each service's latest rollout and its state (kept for an hour after it ended).",
                (Query(f"shiploop_rollout_state{{{PS}}} == 1"),),
                kind="table",
            ),
            PanelSpec(
                "Rollout step",
                "Index of each rollout's current step, 0 for the first.",
                (Query(f"shiploop_rollout_step{{{PS}}}", "{{service}} #{{rollout}} {{candidate}}"),),
            ),
        ),
    ),
    Row(
        "Replicas and control plane",
        (
            PanelSpec(
                "Replicas ready",
                "Replicas passing health checks, per version.",
                (
                    Query(
                        f'sum by (service, version) (shiploop_replicas{{{PSV},state="ready"}})',
                        "{{service}} {{version}}",
                    ),
                ),
                per_version=True,
                width=8,
            ),
            PanelSpec(
                "Replica restarts",
                "Restarts of a version's replicas after they exited; a steady climb is a crash loop "
                "(the replicas' logs say why they exit).",
                (
                    Query(
                        f"sum by (service, version) (increase(shiploop_replica_restarts_total{{{PSV}}}[{RATE}]))",
                        "{{service}} {{version}}",
                    ),
                ),
                per_version=True,
                width=8,
            ),
            PanelSpec(
                "Scrape targets up",
                "Targets Prometheus scraped successfully, per job, of all the project's targets.",
                (
                    Query(f"sum by (job) (up{{{P}}})", "{{job}} up"),
                    Query(f"count by (job) (up{{{P}}})", "{{job}} targets"),
                ),
                width=8,
            ),
            PanelSpec(
                "Route publish time",
                "From the control plane's publish call to Envoy serving the new routes.",
                tuple(
                    Query(
                        f"histogram_quantile({q}, sum by (le) (rate(shiploop_publish_seconds_bucket{{{P}}}[{RATE}])))",
                        f"p{round(q * 100)}",
                    )
                    for q in (0.5, 0.99)
                ),
                unit="s",
            ),
            PanelSpec(
                "Envoy rejections and restarts",
                "Routing generations Envoy rejected (the previous routes kept serving), and times Envoy "
                "was started again after it died.",
                (
                    Query(f"increase(shiploop_envoy_rejections_total{{{P}}}[{RATE}])", "rejections"),
                    Query(f"increase(shiploop_envoy_restarts_total{{{P}}}[{RATE}])", "restarts"),
                ),
            ),
        ),
    ),
)

SERVICE: tuple[Row, ...] = (
    Row(
        "Traffic per version",
        (
            PanelSpec(
                "Requests per second",
                "Requests Envoy answered per version (retries folded in, its own 503/504 included).",
                (Query(request_rate(PSV, "version", RATE), "{{version}}"),),
                unit="reqps",
                per_version=True,
                width=8,
            ),
            PanelSpec(
                "5xx share",
                "Share of answers that were 5xx, per version: what the rollouts count as errors.",
                (Query(error_share(PSV, "version", RATE), "{{version}}"),),
                unit="percentunit",
                per_version=True,
                width=8,
            ),
            PanelSpec(
                "Route weights",
                "Percent of the service's traffic every version gets; a rollout moves them step by step.",
                (Query(f"shiploop_route_weight_percent{{{PSV}}}", "{{version}} ({{track}})"),),
                unit="percent",
                per_version=True,
                width=8,
                max=100,
            ),
            PanelSpec(
                "Latency p50, p95, p99",
                "Upstream latency per version (Envoy's histogram).",
                _latencies(PSV, "version", "{{version}}"),
                unit="ms",
                per_version=True,
                width=24,
            ),
        ),
    ),
    Row(
        "Rollout",
        (
            PanelSpec(
                "Latest rollout",
                "The service's latest rollout and its state (kept for an hour after it ended).",
                (Query(f"shiploop_rollout_state{{{PS}}} == 1"),),
                kind="table",
                width=12,
            ),
            PanelSpec(
                "Rollout step",
                "Index of the rollout's current step, 0 for the first.",
                (Query(f"shiploop_rollout_step{{{PS}}}", "#{{rollout}} {{candidate}}"),),
                width=12,
            ),
            PanelSpec(
                "Guardrail $guardrail",
                "Candidate minus baseline with its anytime-valid interval, against the tolerance: "
                "harm is a lower bound above the tolerance. No estimate until both arms have traffic "
                "in a judged step.",
                tuple(
                    Query(f'shiploop_guardrail_{name}{{{PS},guardrail=~"$guardrail"}}', f"#{{{{rollout}}}} {legend}")
                    for name, legend in (
                        ("estimate", "estimate"),
                        ("lower_bound", "lower bound"),
                        ("upper_bound", "upper bound"),
                        ("tolerance", "tolerance"),
                    )
                ),
                unit="percentunit",
                repeat="guardrail",
                width=8,
            ),
        ),
    ),
    Row(
        "Replicas",
        (
            PanelSpec(
                "Replicas ready and total",
                "Replicas passing health checks, and all replicas, per version.",
                (Query(f"sum by (version, state) (shiploop_replicas{{{PSV}}})", "{{version}} {{state}}"),),
                per_version=True,
            ),
            PanelSpec(
                "Replica restarts",
                "Restarts of a version's replicas after they exited; a steady climb is a crash loop "
                "(the replicas' logs say why they exit).",
                (
                    Query(
                        f"sum by (version) (increase(shiploop_replica_restarts_total{{{PSV}}}[{RATE}]))", "{{version}}"
                    ),
                ),
                per_version=True,
            ),
        ),
    ),
    Row(
        "App counters",
        (
            PanelSpec(
                "$counter per second",
                "The app's own counter from its replicas' /metrics, per version (what app: guardrails read).",
                (
                    Query(
                        f'sum by (version) (rate({{__name__=~"$counter",job="{JOB_REPLICAS}",{PSV}}}[{RATE}]))',
                        "{{version}}",
                    ),
                ),
                per_version=True,
                repeat="counter",
                width=8,
            ),
        ),
    ),
)

# Every decision of a rollout, as an annotation on every panel: the counter moved.
DECISIONS = Query(
    f"sum by (service, rollout, candidate, outcome) (changes(shiploop_rollout_decisions_total{{{PS}}}[1m])) > 0",
    "{{outcome}}",
)


def all_queries(rows: Sequence[Row]) -> list[tuple[PanelSpec, Query]]:
    return [(panel, q) for row in rows for panel in row.panels for q in panel.queries]


def dashboard_uid(project: str, name: str) -> str:
    """Stable across exports, so importing again replaces the dashboard; at most 40 characters."""
    return "shiploop-" + hashlib.sha256(f"{project}/{name}".encode()).hexdigest()[:20]


def _datasource() -> DataSourceRef:
    return DataSourceRef(type_val="prometheus", uid=DATASOURCE)


def _variables(project: str, service: str | None) -> list[Builder[VariableModel]]:
    def query(name: str, promql: str, label: str) -> d.QueryVariable:
        return (
            d.QueryVariable(name)
            .label(label)
            .datasource(_datasource())
            .query(promql)
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(VariableSort.ALPHABETICAL_ASC)
        )

    def every(var: d.QueryVariable) -> d.QueryVariable:
        all_ = VariableOption(selected=True, text=["All"], value=["$__all"])
        return var.multi(True).include_all(True).all_value(".*").current(all_)

    def one(var: d.QueryVariable, value: str) -> d.QueryVariable:
        return var.current(VariableOption(selected=True, text=value, value=value))

    services = query("service", f"label_values(shiploop_route_weight_percent{{{P}}}, service)", "service")
    variables = [
        d.DatasourceVariable("datasource").label("Prometheus").type("prometheus"),
        one(query("project", "label_values(shiploop_route_weight_percent, project)", "project"), project),
        one(services, service) if service else every(services),
        every(query("version", f"label_values(shiploop_route_weight_percent{{{PS}}}, version)", "version")),
    ]
    if service:
        variables += [
            every(query("guardrail", f"label_values(shiploop_guardrail_tolerance{{{PS}}}, guardrail)", "guardrail")),
            every(
                query("counter", f'label_values({{job="{JOB_REPLICAS}",{PS}}}, __name__)', "app counter").regex(
                    "/.+_total$/"
                )
            ),
        ]
    return variables


def _panel(spec: PanelSpec, panel_id: int) -> timeseries.Panel | table.Panel:
    builder: timeseries.Panel | table.Panel = timeseries.Panel() if spec.kind == "timeseries" else table.Panel()
    builder = (
        builder.id(panel_id)
        .title(spec.title)
        .description(spec.description)
        .datasource(_datasource())
        .unit(spec.unit)
        .span(spec.width)
        .height(8)
    )
    if spec.max is not None:
        builder = builder.min(0).max(spec.max)
    if spec.repeat:
        builder = builder.repeat(spec.repeat).repeat_direction("h").max_per_row(3)
    for i, q in enumerate(spec.queries):
        target = prometheus.Dataquery().expr(q.expr).ref_id(chr(ord("A") + i)).datasource(_datasource())
        if spec.kind == "table":
            target = target.instant().format(PromQueryFormat.TABLE)
        elif q.legend:
            target = target.legend_format(q.legend)
        builder = builder.with_target(target)
    return builder


def _annotation() -> dict[str, Any]:
    built = (
        d.AnnotationQuery()
        .name("Rollout decisions")
        .datasource(_datasource())
        .enable(True)
        .icon_color("orange")
        .expr(DECISIONS.expr)
        .build()
        .to_json()
    )
    # The SDK's model has no fields for the Prometheus annotation's text; Grafana reads these.
    return json.loads(json.dumps(built, cls=JSONEncoder)) | {
        "titleFormat": DECISIONS.legend,
        "textFormat": "rollout #{{rollout}} of {{service}}: {{candidate}}",
        "tagKeys": "service,outcome",
        "step": "15s",
        "useValueForTime": False,
    }


def build_dashboard(project: str, service: str | None) -> dict[str, Any]:
    """The overview (service None) or one service's dashboard, as the JSON Grafana imports."""
    name = service or "overview"
    builder = (
        d.Dashboard(f"shiploop · {project} · {name}")
        .uid(dashboard_uid(project, name))
        .description(
            (f"The versions of {service}" if service else "Every service")
            + f" of the shiploop project {project}, from the Prometheus that scrapes it"
            + " (written by `shiploop dashboards export`)"
        )
        .tags([*TAGS, project])
        .editable()
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .time("now-1h", "now")
        .refresh("10s")
        .link(
            d.DashboardLink("shiploop")
            .type(DashboardLinkType.DASHBOARDS)
            .tags([*TAGS, project])
            .as_dropdown(True)
            .include_vars(True)
            .keep_time(True)
        )
    )
    for variable in _variables(project, service):
        builder = builder.with_variable(variable)
    panel_id = 0
    for row in SERVICE if service else OVERVIEW:
        panel_id += 1
        builder = builder.with_row(d.Row(row.title).id(panel_id))
        for spec in row.panels:
            panel_id += 1
            builder = builder.with_panel(_panel(spec, panel_id))
    body: dict[str, Any] = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    body["annotations"] = {"list": [_annotation()]}
    return body


def build_dashboards(project: str, services: Sequence[str]) -> dict[str, dict[str, Any]]:
    """File name -> dashboard: `overview.json` and `service-NAME.json` for every service."""
    out = {"overview.json": build_dashboard(project, None)}
    for service in sorted(services):
        out[f"service-{service}.json"] = build_dashboard(project, service)
    return out
