"""The Grafana dashboards `shiploop dashboards export` writes: their shape, not a golden file.

Every panel queries the Prometheus chosen in the `datasource` variable, every `$variable`
a query uses is defined, and the series the issue asks for are all on a panel. That the
queries evaluate on a real Prometheus is tests/e2e/test_prometheus.py's.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from shiploop.telemetry.grafana import DECISIONS, OVERVIEW, SERVICE, all_queries, build_dashboards, dashboard_uid

GRAFANA_BUILTINS = {"__rate_interval", "__interval", "__range", "__all"}
VARIABLE = re.compile(r"\$\{?(\w+)")


@pytest.fixture(scope="module")
def dashboards() -> dict[str, dict[str, Any]]:
    return build_dashboards("demo", ["web", "api"])


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in board["panels"] if p["type"] != "row"]


def variables(board: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in board["templating"]["list"]}


def test_an_overview_and_one_dashboard_per_service_with_stable_uids(dashboards):
    assert list(dashboards) == ["overview.json", "service-api.json", "service-web.json"]
    uids = [b["uid"] for b in dashboards.values()]
    assert len(set(uids)) == 3 and all(len(u) <= 40 and re.fullmatch(r"[\w-]+", u) for u in uids)
    # Exported again, the same uids: importing replaces the dashboards instead of adding copies.
    assert dashboards["service-web.json"]["uid"] == dashboard_uid("demo", "web")
    assert build_dashboards("demo", ["web"])["service-web.json"]["uid"] == dashboards["service-web.json"]["uid"]
    assert build_dashboards("other", ["web"])["service-web.json"]["uid"] != dashboards["service-web.json"]["uid"]
    for board in dashboards.values():
        assert "shiploop" in board["tags"] and board["title"].startswith("shiploop · demo · ")


def test_every_panel_has_a_query_on_the_datasource_variable(dashboards):
    for name, board in dashboards.items():
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), name
        for panel in panels(board):
            where = f"{name}: {panel['title']}"
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
            assert panel["targets"], where
            assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"]), where
            for target in panel["targets"]:
                assert target["expr"].strip(), where
                assert target["datasource"]["uid"] == "${datasource}", where
            pos = panel["gridPos"]
            assert pos["x"] + pos["w"] <= 24 and pos["h"] > 0, where


def test_template_variables_for_datasource_project_service_and_version(dashboards):
    for name, board in dashboards.items():
        v = variables(board)
        assert {"datasource", "project", "service", "version"} <= set(v), name
        assert v["datasource"]["type"] == "datasource" and v["datasource"]["query"] == "prometheus"
        for var in v.values():
            if var["type"] == "query":
                assert var["datasource"]["uid"] == "${datasource}", (name, var["name"])
                assert var["query"].startswith("label_values("), (name, var["name"])
        assert v["project"]["current"]["value"] == "demo"
        assert v["version"]["includeAll"] and v["version"]["multi"] and v["version"]["allValue"] == ".*"
    overview, web = variables(dashboards["overview.json"]), variables(dashboards["service-web.json"])
    assert overview["service"]["includeAll"] and overview["service"]["multi"]
    assert web["service"]["current"]["value"] == "web" and not web["service"].get("includeAll")
    assert {"guardrail", "counter"} <= set(web)


def test_every_variable_a_query_uses_is_defined(dashboards):
    for name, board in dashboards.items():
        defined = set(variables(board)) | GRAFANA_BUILTINS
        texts = [t["expr"] for p in panels(board) for t in p["targets"]] + [p["title"] for p in panels(board)]
        texts += [v.get("query", "") for v in variables(board).values() if v["type"] == "query"]
        texts += [a["expr"] for a in board["annotations"]["list"]]
        used = {m for text in texts for m in VARIABLE.findall(text)}
        assert used <= defined, (name, used - defined)
        for panel in panels(board):
            if "repeat" in panel:
                assert panel["repeat"] in defined, (name, panel["title"])


def test_per_version_panels_filter_and_split_by_version():
    specs = [(spec, q) for spec, q in all_queries(OVERVIEW) + all_queries(SERVICE) if spec.per_version]
    assert len({spec.title for spec, _ in specs}) >= 7
    for spec, q in specs:
        assert 'version=~"$version"' in q.expr, spec.title
        assert "{{version}}" in q.legend, spec.title
        # Kept by the aggregation, or the raw series (which carries it).
        assert re.search(r"by \([^)]*\bversion\b", q.expr) or not q.expr.startswith(("sum", "histogram")), spec.title


def test_the_series_the_issue_asks_for_are_all_on_a_panel(dashboards):
    web = dashboards["service-web.json"]
    exprs = " ".join(t["expr"] for p in panels(web) for t in p["targets"])
    for series in (
        "envoy_cluster_upstream_rq_completed",  # request rate
        'envoy_response_code_class="5"',  # 5xx share
        "histogram_quantile(0.5,",
        "histogram_quantile(0.95,",
        "histogram_quantile(0.99,",
        "shiploop_route_weight_percent",  # weights over time
        "shiploop_rollout_step",
        "shiploop_guardrail_estimate",
        "shiploop_guardrail_lower_bound",
        "shiploop_guardrail_upper_bound",
        "shiploop_guardrail_tolerance",
        "shiploop_replica_restarts_total",
        '__name__=~"$counter"',  # the app's counters, one panel each
    ):
        assert series in exprs, series
    counters = next(p for p in panels(web) if p.get("repeat") == "counter")
    assert 'job="shiploop_replicas"' in counters["targets"][0]["expr"]
    assert variables(web)["counter"]["regex"] == "/.+_total$/"


def test_rollout_decisions_are_annotations_on_every_dashboard(dashboards):
    for board in dashboards.values():
        (decisions,) = board["annotations"]["list"]
        assert decisions["expr"] == DECISIONS.expr and "shiploop_rollout_decisions_total" in decisions["expr"]
        assert decisions["datasource"]["uid"] == "${datasource}" and decisions["enable"]
        assert decisions["titleFormat"] == "{{outcome}}" and "{{rollout}}" in decisions["textFormat"]
