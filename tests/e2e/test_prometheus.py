"""`up --prometheus` with a 10% canary under load: a real Prometheus scrapes every target, and
queries per `version` label give the canary's request rate and 5xx share (issue 9, done when)."""

from __future__ import annotations

import os
import shutil
import signal
from typing import Any

import httpx
import pytest
import yaml

from shiploop.loadgen import background_load
from shiploop.procs import is_running
from shiploop.telemetry.alerts import all_rules
from tests import loopback
from tests.conftest import wait_until
from tests.daemon_helpers import Project
from tests.prometheus_exports import check_alert_rules, check_dashboards, loaded_rules_all_healthy

RPS = 60
# Retries (once, on the other replica) and outlier ejection move the 5xx share Envoy
# reports well away from the app's own rate (0.04 and 0.61 seen for 0.2 and 0.5), so the
# test asks only that the canary's series shows its failures and stable's shows none.
CANARY_FAIL_RATE = 0.5


@pytest.fixture
def project(project: Project) -> Project:
    if shutil.which("prometheus") is None:
        pytest.skip("prometheus not installed (Debian: apt-get install prometheus; make test does it as root)")
    project.add_service("echo", "/echo/")
    return project


def query(prom: str, promql: str) -> dict[str, float]:
    """An instant query's result per `version` label."""
    r = loopback.get(f"{prom}/api/v1/query", params={"query": promql}, timeout=5)
    body = r.json()
    assert body["status"] == "success", body
    return {s["metric"].get("version", ""): float(s["value"][1]) for s in body["data"]["result"]}


def test_prometheus_scrapes_every_target_and_sees_the_canary_per_version(project: Project):
    project.cli("up", "--detach", "--prometheus", "--port", str(project.port))
    status = project.status()
    api = f"http://127.0.0.1:{project.daemon_info()['api_port']}"
    assert status["api"] == api and status["dashboard"] == f"{api}/"
    prom = status["prometheus"]
    assert prom and prom.startswith("http://127.0.0.1:")
    stable = project.versions("echo")["stable"]["id"]
    project.set_env("echo", {"FAIL_RATE": str(CANARY_FAIL_RATE)})
    project.cli("deploy", "echo", "--weight", "10")
    canary = project.versions("echo")["canary"]["id"]

    with background_load(f"{project.url}/echo/x", rps=RPS):

        def every_target_up() -> list[dict[str, Any]] | None:
            try:
                targets = loopback.get(f"{prom}/api/v1/targets", timeout=2).json()["data"]["activeTargets"]
            except httpx.HTTPError:
                return None
            # daemon; Envoy: the non-cluster stats, stable, canary; four replicas
            if len(targets) == 8 and all(t["health"] == "up" for t in targets):
                return targets
            return None

        targets = wait_until(every_target_up, 40, interval=1, what="prometheus to scrape every target")
        jobs = sorted((t["labels"]["job"], t["labels"].get("track", "")) for t in targets)
        assert jobs == sorted(
            [("shiploop", ""), ("shiploop_envoy", ""), ("shiploop_envoy", "stable"), ("shiploop_envoy", "canary")]
            + [("shiploop_replicas", "stable")] * 2
            + [("shiploop_replicas", "canary")] * 2
        )
        rate = 'sum by (version) (rate(envoy_cluster_upstream_rq_completed{service="echo",track=~".+"}[20s]))'
        errors = (
            'sum by (version) (rate(envoy_cluster_upstream_rq_xx{service="echo",envoy_response_code_class="5"}[20s]))'
        )

        def both_versions_measured() -> dict[str, float] | None:
            got = query(prom, rate)
            # Until the window holds only loaded scrapes, the rate trails the load.
            full = set(got) == {stable, canary} and 0.6 * RPS < sum(got.values()) < 1.4 * RPS
            return got if full else None

        rates = wait_until(both_versions_measured, 40, interval=1, what="the load's request rate per version")
        # The dashboards' rate() and increase() need two samples in their 20 s window, and Prometheus
        # finds each job's targets on its own (file_sd, every 5 s): under load, the daemon's first
        # scrape once came 5 s before the check, so its counters had one sample and no increase.
        scraped = "min(count_over_time(up[20s]))"
        wait_until(lambda: query(prom, scraped).get("", 0) >= 2, 30, interval=1, what="every target scraped twice")
        share = rates[canary] / (rates[canary] + rates[stable])
        assert 0.03 < share < 0.2, rates  # 10% of the traffic
        fives = query(prom, f"({errors}) / ({rate})")
        assert fives[canary] > 0.01, fives
        assert fives.get(stable, 0.0) == 0.0, fives
        # The daemon's own metrics and the replicas' counters, with the same labels.
        weights = query(prom, 'shiploop_route_weight_percent{service="echo"}')
        assert weights == {stable: 90.0, canary: 10.0}
        app = query(prom, 'sum by (version) (app_requests_total{job="shiploop_replicas",track="canary"})')
        assert set(app) == {canary} and app[canary] > 0
        # The exported Grafana dashboards and alert rules on this Prometheus: every query evaluates,
        # the per-version panels show the canary; the rules `up --prometheus` loaded all evaluate.
        name = yaml.safe_load((project.root / "shiploop.yaml").read_text())["name"]
        with loopback.client(base_url=prom, timeout=10) as c:
            assert check_dashboards(c, name, "echo", stable, canary) > 30
            assert check_alert_rules(c) == len(all_rules())
            health = wait_until(lambda: loaded_rules_all_healthy(c), 20, interval=0.5, what="the rules evaluated")
            assert health == {rule.alert: "ok" for rule in all_rules()}

    # Supervised: killed, it is started again.
    record = project.prometheus_info()
    assert record is not None
    os.kill(record["pid"], signal.SIGKILL)

    def restarted() -> dict[str, Any] | None:
        now = project.prometheus_info()
        return now if now and now["pid"] != record["pid"] and is_running(now["pid"], now["start_time"]) else None

    wait_until(restarted, 15, interval=0.2, what="prometheus to be started again")
    wait_until(lambda: project.status()["prometheus"], 5, interval=0.2)
    events = [e["kind"] for e in loopback.get(f"{api}/v1/events").json()]
    assert "prometheus-restarted" in events
