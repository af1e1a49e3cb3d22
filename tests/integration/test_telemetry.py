"""Metrics out, against a real daemon, Envoy and replicas during a real canary rollout."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shiploop.loadgen import background_load
from tests.conftest import wait_until
from tests.daemon_helpers import Project

# Stays at its first step (10%) for the whole test: min_step is far away.
CANARY_POLICY = """rollout:
  steps: [10, 100]
  min_step: 5m
  max_step: 10m
  min_samples: 20
"""


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    p = Project(tmp_path / "proj")
    p.root.mkdir()
    (p.root / "shiploop.yaml").write_text("name: telemetry\n")
    p.add_service("echo", "/echo/", extra=CANARY_POLICY)
    yield p
    procs = p.recorded_processes() if (p.root / ".shiploop" / "state.db").exists() else []
    p.cli("down", check=False)
    assert p.running(procs) == [], "down left processes behind"


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    r = httpx.get(url, timeout=5)
    assert r.status_code == 200, r.text
    out: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    """The one sample of `name` whose labels include `labels`."""
    found = [v for (n, ls), v in samples.items() if n == name and labels.items() <= dict(ls).items()]
    assert len(found) == 1, (name, labels, found)
    return found[0]


def test_daemon_and_envoy_metrics_during_a_canary(project: Project):
    project.cli("up", "--detach", "--port", str(project.port))
    api = f"http://127.0.0.1:{project.daemon_info()['api_port']}"
    stable = project.versions("echo")["stable"]["id"]
    (project.root / "echo" / "README.txt").write_text("a new version\n")
    with background_load(f"{project.url}/echo/x", rps=60):
        project.cli("rollout", "echo")
        canary = project.versions("echo")["canary"]["id"]

        def guardrails_estimated() -> Samples | None:
            s = scrape(f"{api}/metrics")
            has = any(n == "shiploop_guardrail_estimate" for n, _ in s)
            return s if has else None

        m = wait_until(guardrails_estimated, 30, interval=0.5, what="a guardrail estimate in /metrics")

    assert value(m, "shiploop_route_weight_percent", service="echo", version=stable, track="stable") == 90
    assert value(m, "shiploop_route_weight_percent", service="echo", version=canary, track="canary") == 10
    for version, track in ((stable, "stable"), (canary, "canary")):
        assert value(m, "shiploop_replicas", version=version, track=track, state="ready") == 2
        assert value(m, "shiploop_replicas", version=version, track=track, state="total") == 2
        assert value(m, "shiploop_replica_restarts_total", version=version, track=track) == 0
    rollout = {"service": "echo", "rollout": "1", "candidate": canary, "baseline": stable}
    assert value(m, "shiploop_rollout_step", **rollout) == 0
    assert value(m, "shiploop_rollout_state", **rollout, state="progressing") == 1
    assert value(m, "shiploop_rollout_state", **rollout, state="promoted") == 0
    assert value(m, "shiploop_rollout_decisions_total", **rollout, outcome="advance") == 0
    g = {"service": "echo", "rollout": "1", "guardrail": "error_rate"}
    est = value(m, "shiploop_guardrail_estimate", **g)
    assert value(m, "shiploop_guardrail_lower_bound", **g) <= est <= value(m, "shiploop_guardrail_upper_bound", **g)
    assert value(m, "shiploop_guardrail_tolerance", **g) > 0
    # deploy (clusters, then routes) and the 10% weights: every publish was timed
    assert value(m, "shiploop_publish_seconds_count") >= 2
    assert value(m, "shiploop_publish_seconds_bucket", le="+Inf") == value(m, "shiploop_publish_seconds_count")
    assert value(m, "shiploop_envoy_rejections_total") == 0
    assert value(m, "shiploop_envoy_restarts_total") == 0

    # The same Host check as the rest of the API.
    assert httpx.get(f"{api}/metrics", headers={"Host": "evil.example:80"}).status_code == 421
