"""The exported Grafana dashboards and alert rules against a real Prometheus scraping a real run
(issue 9: every panel query evaluates, and returns data for a running canary).

Used by tests/e2e/test_prometheus.py inside its one Prometheus + canary run, and, for the
variable filling only, by tests/integration/test_exports.py.
"""

from __future__ import annotations

import math
import re
from typing import Any

import httpx
import yaml

from shiploop.telemetry.alerts import alert_rules
from shiploop.telemetry.grafana import DECISIONS, OVERVIEW, SERVICE, all_queries, build_dashboards

# What Grafana puts in for the variables: one service, every version, a counter the apps have.
GRAFANA_VALUES = {
    "$__rate_interval": "20s",
    "$__interval": "5s",
    "$project": "testproj",
    "$service": "echo",
    "$version": ".*",
    "$guardrail": ".*",
    "$counter": "app_requests_total",
}
LABEL_VALUES = re.compile(r"label_values\((.*), (\w+)\)")


def interpolate(expr: str, values: dict[str, str] | None = None) -> str:
    values = GRAFANA_VALUES | (values or {})
    for name in sorted(values, key=len, reverse=True):  # $__rate_interval before $__interval
        expr = expr.replace(name, values[name])
    assert not re.search(r"\$\w", expr), expr
    return expr


def instant(prom: httpx.Client, promql: str) -> list[dict[str, Any]]:
    r = prom.get("/api/v1/query", params={"query": promql})
    body = r.json()
    assert body["status"] == "success" and not body.get("warnings"), (promql, body)
    return list(body["data"]["result"])


def _per_version() -> dict[str, bool]:
    specs = all_queries(OVERVIEW) + all_queries(SERVICE)
    return {q.expr: spec.per_version for spec, q in specs} | {DECISIONS.expr: False}


def check_dashboards(prom: httpx.Client, project: str, service: str, stable: str, canary: str) -> int:
    """Every query of every exported dashboard evaluates; the per-version ones show the canary.
    Returns how many queries it evaluated. One client for all: under the test's load, a new
    client a request (httpx.get) cost 0.3 s, most of this check's time."""
    values = {"$project": project, "$service": service}
    per_version = _per_version()
    evaluated = 0
    for name, board in build_dashboards(project, [service]).items():
        for var in board["templating"]["list"]:
            if var["type"] != "query":
                continue
            selector, label = LABEL_VALUES.fullmatch(var["query"]).groups()  # type: ignore[union-attr]
            r = prom.get(f"/api/v1/label/{label}/values", params={"match[]": interpolate(selector, values)})
            assert r.json()["status"] == "success", (name, var["name"], r.text)
            found = set(r.json()["data"])
            want = {"project": {project}, "service": {service}, "version": {stable, canary}}.get(var["name"], set())
            assert want <= found, (name, var["name"], found)
            if var["name"] == "counter":
                assert "app_requests_total" in found, found
        exprs = [t["expr"] for p in board["panels"] if p["type"] != "row" for t in p["targets"]]
        exprs += [a["expr"] for a in board["annotations"]["list"]]
        for expr in exprs:
            assert expr in per_version, f"{name}: a query not in the tables of telemetry.grafana: {expr}"
            result = instant(prom, interpolate(expr, values))
            evaluated += 1
            if not per_version[expr]:
                continue
            got = {s["metric"].get("version"): float(s["value"][1]) for s in result}
            assert canary in got and math.isfinite(got[canary]), (name, expr, result)
            only = instant(prom, interpolate(expr, values | {"$version": canary}))
            assert {s["metric"].get("version") for s in only} == {canary}, (name, expr, only)
    return evaluated


def check_alert_rules(prom: httpx.Client) -> int:
    """Every exported rule's expression evaluates; returns how many."""
    rules = [r for g in yaml.safe_load(alert_rules())["groups"] for r in g["rules"]]
    for rule in rules:
        instant(prom, rule["expr"])
    return len(rules)


def loaded_rules_all_healthy(prom: httpx.Client) -> dict[str, str] | None:
    """The rules the Prometheus of `up --prometheus` loaded, once each was evaluated: name -> health."""
    groups = prom.get("/api/v1/rules").json()["data"]["groups"]
    rules = [r for g in groups for r in g["rules"]]
    if not rules or any(r["lastEvaluation"].startswith("0001-") for r in rules):
        return None
    return {r["name"]: r["health"] + (f": {r['lastError']}" if r.get("lastError") else "") for r in rules}
