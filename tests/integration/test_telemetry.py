"""Metrics out, against a real daemon, Envoy and replicas during a real canary rollout."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shiploop.gateway.gateway import Gateway
from shiploop.gateway.model import Cluster, Endpoint, Match, Route, RoutingState, WeightedTarget
from shiploop.loadgen import background_load
from shiploop.procs import free_port
from tests import loopback
from tests.conftest import wait_until
from tests.daemon_helpers import SHIPLOOP, Project

# Stays at its first step (10%) for the whole test: min_step is far away.
CANARY_POLICY = """rollout:
  steps: [10, 100]
  min_step: 5m
  max_step: 10m
  min_samples: 20
"""


@pytest.fixture
def project(project: Project) -> Project:
    project.add_service("echo", "/echo/", extra=CANARY_POLICY)
    return project


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    r = loopback.get(url, timeout=5)
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


@pytest.mark.slow  # over 4 s alone: with `make test`, not `make test-fast`
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
    assert loopback.get(f"{api}/metrics", headers={"Host": "evil.example:80"}).status_code == 421

    # file_sd: every ready replica, labelled; Envoy's stats per track through the stats listener.
    files = project.root / ".shiploop" / "prometheus"
    replicas = json.loads((files / "replicas.json").read_text())
    labels = sorted((g["labels"]["version"], g["labels"]["track"], g["labels"]["replica"]) for g in replicas)
    assert labels == sorted([(stable, "stable", "0"), (stable, "stable", "1"), (canary, "canary", "0"),
                             (canary, "canary", "1")])
    for g in replicas:
        assert g["labels"]["service"] == "echo"
        assert loopback.get(f"http://{g['targets'][0]}/metrics").status_code == 200
    assert json.loads((files / "daemon.json").read_text())[0]["targets"] == [api.removeprefix("http://")]
    envoy = json.loads((files / "envoy.json").read_text())
    per_track: dict[str, Samples] = {}
    for g in envoy:
        params = {k.removeprefix("__param_"): v for k, v in g["labels"].items() if k.startswith("__param_")}
        per_track[g["labels"].get("track", "")] = scrape_with(f"http://{g['targets'][0]}/metrics", params)
    assert set(per_track) == {"", "stable", "canary"}
    for track, version in (("stable", stable), ("canary", canary)):
        s = per_track[track]
        # (prometheus_client's parser names a counter's sample NAME_total; Prometheus keeps Envoy's name.)
        assert value(s, "envoy_cluster_upstream_rq_completed_total", service="echo", version=version) > 0
        assert {dict(ls).get("version") for n, ls in s if n.startswith("envoy_cluster_")} == {version}
    assert not any("envoy_cluster_name" in dict(ls) for _, ls in per_track[""])  # cluster_manager.* stays
    assert any(n.startswith("envoy_http_downstream_rq") for n, _ in per_track[""])
    stats = envoy[0]["targets"][0]
    # Only GET /metrics reaches the admin socket: nothing else of the admin API is exposed.
    for path in ("/ready", "/quitquitquit", "/stats", "/config_dump", "/metrics/x"):
        assert loopback.get(f"http://{stats}{path}").status_code == 404, path
    assert loopback.post(f"http://{stats}/quitquitquit").status_code == 404

    # Ended by hand: the canary's replicas leave the targets, and the outcome is counted.
    project.cli("rollout", "abort", "echo")

    def canary_gone() -> bool:
        replicas = json.loads((files / "replicas.json").read_text())
        tracks = {g["labels"].get("track") for g in json.loads((files / "envoy.json").read_text())}
        return {g["labels"]["version"] for g in replicas} == {stable} and "canary" not in tracks

    wait_until(canary_gone, 20, interval=0.2, what="the canary's targets to leave the file_sd files")
    m = scrape(f"{api}/metrics")
    assert value(m, "shiploop_rollout_state", **rollout, state="aborted") == 1
    assert value(m, "shiploop_rollout_decisions_total", **rollout, outcome="aborted") == 1


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool not installed (Debian: apt-get install prometheus; make test does it as root)")
    return found


@pytest.mark.slow  # over 4 s alone: with `make test`, not `make test-fast`
def test_prometheus_config_is_valid_for_promtool_with_the_daemons_targets(project: Project):
    tool = promtool()
    project.cli("up", "--detach", "--port", str(project.port))
    out = project.root / "prometheus.yml"
    project.cli("prometheus-config", "--out", str(out))
    # promtool reads the file_sd files too: they exist (the daemon wrote them) and hold valid target groups.
    check = subprocess.run([tool, "check", "config", str(out)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "WARNING" not in check.stdout + check.stderr, check.stdout + check.stderr
    assert project.cli("prometheus-config").stdout == out.read_text()


def scrape_with(url: str, params: dict[str, str]) -> Samples:
    return scrape(str(httpx.URL(url, params=params)))


@pytest.mark.parametrize(
    ("env", "hint"),
    [
        ({"PATH": "/nonexistent"}, "sudo apt-get install prometheus"),
        ({"SHIPLOOP_PROMETHEUS": "/nonexistent/prometheus"}, "unset SHIPLOOP_PROMETHEUS"),
    ],
)
@pytest.mark.slow  # over 4 s alone: with `make test`, not `make test-fast`
def test_up_prometheus_without_prometheus_is_one_clear_line_and_starts_nothing(
    project: Project, env: dict[str, str], hint: str
):
    proc = subprocess.run(
        [*SHIPLOOP, "up", "--detach", "--prometheus", "--port", str(project.port)],
        cwd=project.root,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "300", **env},
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and hint in lines[0], lines
    assert project.recorded_processes() == []


def test_envoy_restarts_on_a_new_stats_port_when_its_own_was_taken(tmp_path: Path, spawn_app):
    """A metrics port must never keep the gateway down: Envoy dies, something takes its stats
    port, and the restarted Envoy serves traffic and its stats on another port."""
    app = spawn_app("abc123", service="web")
    gateway_port, stats_port = free_port(), free_port()
    gw = Gateway(tmp_path / "state", stats_port=stats_port)
    cluster = Cluster("web_abc123", (Endpoint("127.0.0.1", app.port),))
    route = Route("web", Match(prefix="/"), (WeightedTarget("web_abc123", 100, "web@abc123"),))
    state = RoutingState(clusters=(cluster,), routes=(route,), listen_port=gateway_port)
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(gw.start(state))
        assert gw.process is not None and gw.process.stats_port == stats_port
        loopback.get(f"http://127.0.0.1:{gateway_port}/x")
        m = scrape(f"http://127.0.0.1:{stats_port}/metrics")
        assert value(m, "envoy_cluster_upstream_rq_completed_total", service="web", version="abc123") == 1
        os.kill(gw.process.pid, signal.SIGKILL)
        wait_until(lambda: not gw.alive(), 5, what="envoy to die")
        with socket.socket() as taken:
            taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the dead Envoy's connections linger

            def took_it() -> bool:
                try:
                    taken.bind(("127.0.0.1", stats_port))  # the kernel frees a killed process's sockets shortly after
                except OSError:
                    return False
                return True

            wait_until(took_it, 5, interval=0.05, what="the stats port to be free to take")
            taken.listen()
            restart = loop.run_until_complete(gw.restart())
        assert restart is not None and gw.alive()
        assert gw.stats_port != stats_port and gw.process.stats_port == gw.stats_port
        assert loopback.get(f"http://127.0.0.1:{gateway_port}/x").status_code == 200
        m = scrape(f"http://127.0.0.1:{gw.stats_port}/metrics")
        assert value(m, "envoy_cluster_upstream_rq_completed_total", service="web", version="abc123") == 1
    finally:
        loop.run_until_complete(gw.stop())
        loop.close()
