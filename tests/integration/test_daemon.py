"""The daemon and CLI end to end: real processes, real Envoy, real HTTP."""

from __future__ import annotations

import json
import os
import signal
import socket
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from shiploop.loadgen import background_load
from shiploop.paths import ProjectPaths
from shiploop.procs import is_running
from tests import loopback
from tests.conftest import wait_until
from tests.daemon_helpers import Project


@pytest.fixture
def project(project: Project) -> Project:
    project.add_service("echo", "/echo/")
    return project


def served_by(url: str, n: int, headers: dict[str, str] | None = None) -> Counter[str]:
    seen: Counter[str] = Counter()
    with loopback.client() as c:
        for _ in range(n):
            r = c.get(url, headers=headers)
            assert r.status_code == 200, r.text
            seen[r.json()["version"]] += 1
    return seen


@pytest.mark.slow
def test_deploy_route_promote_rollback_follow_at_once(project: Project):
    project.cli("up", "--detach", "--port", str(project.port))
    status = project.status()
    assert status["gateway"] == project.url
    stable = project.versions("echo")["stable"]
    assert (stable["weight"], stable["ready"], stable["replicas"]) == (100, 2, 2)
    url = f"{project.url}/echo/x"
    assert served_by(url, 10) == Counter({stable["id"]: 10})

    def stable_traffic() -> dict[str, Any] | None:
        t = project.versions("echo")["stable"].get("traffic")
        # Envoy merges histograms asynchronously on each admin read: latency may trail counts by a read.
        return t if t and t["rps"] > 0 and t["p95_ms"] is not None else None

    traffic = wait_until(stable_traffic, 10, interval=0.3, what="status to show stable's traffic")
    assert traffic["error_rate"] == 0 and traffic["source_errors"] == []

    project.set_env("echo", {"GREETING": "v2"})
    out = project.cli("deploy", "echo", "--weight", "0").stdout
    canary = project.versions("echo")["canary"]
    assert canary["id"] in out and canary["weight"] == 0 and canary["ready"] == 2
    assert served_by(url, 20) == Counter({stable["id"]: 20})

    # Each command returns once Envoy serves the change: the next request follows it.
    project.cli("route", "echo", "--weight", f"{canary['id'][:6]}=100")
    assert served_by(url, 20) == Counter({canary["id"]: 20})
    project.cli("route", "echo", "--weight", "stable=100")
    assert served_by(url, 20) == Counter({stable["id"]: 20})

    project.cli("route", "echo", "--header", "x-user=ana", "--to", "canary")
    assert served_by(url, 20, {"x-user": "ana"}) == Counter({canary["id"]: 20})
    assert served_by(url, 20, {"x-user": "bob"}) == Counter({stable["id"]: 20})
    project.cli("route", "echo", "--remove-header", "x-user")
    assert served_by(url, 10, {"x-user": "ana"}) == Counter({stable["id"]: 10})

    for args, message in [
        (("deploy", "nosuch"), "unknown service 'nosuch'"),
        (("route", "echo", "--weight", "canary=150"), "out of range"),
        (("route", "echo", "--weight", "zzz=10"), "no deployed version matching 'zzz'"),
        (("route", "echo", "--header", "x-user", "--to", "canary"), "is not NAME=VALUE"),
    ]:
        r = project.cli(*args, check=False)
        assert r.returncode == 2 and message in r.stderr and r.stderr.strip().count("\n") == 0, r.stderr
    assert served_by(url, 10) == Counter({stable["id"]: 10})  # nothing changed

    logs = project.cli("logs", "echo", "--version", "canary").stdout
    assert f"echo@{canary['id']} listening on" in logs and stable["id"] not in logs
    listed = json.loads(project.cli("versions", "echo", "--json").stdout)
    assert [v["id"] for v in listed] == [stable["id"], canary["id"]]

    project.cli("rollback", "echo")
    assert served_by(url, 10) == Counter({stable["id"]: 10})
    wait_until(lambda: "canary" not in project.versions("echo"), 15, what="canary to stop")

    project.set_env("echo", {"GREETING": "v3"})
    v3 = project.cli("deploy", "echo", "--weight", "50", "--json")
    project.cli("promote", "echo")
    new_stable = project.versions("echo")["stable"]
    assert new_stable["id"] in v3.stdout and new_stable["weight"] == 100
    assert served_by(url, 20) == Counter({new_stable["id"]: 20})
    wait_until(lambda: len(project.status()["services"][0]["versions"]) == 1, 15, what="old stable to drain")


@pytest.mark.slow
def test_daemon_kill_9_under_load_loses_nothing_and_is_readopted(project: Project):
    project.cli("up", "--detach", "--port", str(project.port))
    before = project.recorded_processes()
    daemon = project.daemon_info()
    with background_load(f"{project.url}/echo/x", rps=100, timeout_s=5.0) as load:
        load.wait_until(lambda r: r.total >= 100, 10)
        os.kill(daemon["pid"], signal.SIGKILL)
        wait_until(lambda: not is_running(daemon["pid"], daemon["start_time"]), 5, what="daemon to die")
        load.wait_until(lambda r: r.total >= 300, 10)
        assert project.running(before) == before, "replicas and Envoy must outlive the daemon"
        project.cli("up", "--detach")
        load.wait_until(lambda r: r.total >= 500, 10)
    report = load.report()
    assert report.total >= 500
    assert report.failed == 0, report.render()
    # The same processes serve: adopted, not restarted.
    assert sorted(project.recorded_processes()) == sorted(before)
    assert project.status()["gateway"] == project.url


@pytest.mark.slow
def test_crashed_replica_is_restarted_and_recorded(project: Project):
    project.set_env("echo", {"CRASH_AFTER": "5"})
    project.cli("up", "--detach", "--port", str(project.port))
    with loopback.client() as c:
        for _ in range(30):
            c.get(f"{project.url}/echo/x")
    api = f"http://127.0.0.1:{project.daemon_info()['api_port']}"

    def crashes() -> list[dict[str, Any]]:
        return [e for e in loopback.get(f"{api}/v1/events").json() if e["kind"] == "replica-crashed"]

    # The supervisor notices a crash on its next tick (every 0.5 s): wait for the record.
    recorded = wait_until(crashes, 5, interval=0.1, what="the crash to be recorded")
    assert "exit code 3" in recorded[0]["message"]
    wait_until(lambda: project.versions("echo")["stable"]["ready"] == 2, 15, what="replicas restarted")
    # By now the daemon has made hundreds of requests: health probes, the apps' /metrics, Envoy's stats.
    # Its log, which nothing rotates, has no line for each (they were 1 KB a second for one service).
    log = ProjectPaths(project.root).daemon_log.read_text().splitlines()
    assert log[0] == "... building echo"
    assert [ln for ln in log if " httpx: " in ln or " httpcore" in ln] == []


@pytest.mark.slow  # over 4 s alone: with `make test`, not `make test-fast`
def test_cli_errors_are_one_line_and_exit_2(project: Project):
    not_running = project.cli("status", check=False)
    assert not_running.returncode == 2
    assert not_running.stderr.strip().count("\n") == 0 and "not running" in not_running.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", project.port))
        taken.listen()
        busy = project.cli("up", "--detach", "--port", str(project.port), check=False)
    assert busy.returncode == 2 and f"gateway port {project.port} is in use" in busy.stderr
    assert project.running(project.recorded_processes()) == [], "a failed up must stop what it started"
    bad = project.root / "echo" / "service.yaml"
    bad.write_text(bad.read_text().replace("replicas: 2", "replcias: 2"))
    r = project.cli("up", "--detach", "--port", str(project.port), check=False)
    assert r.returncode == 2
    assert "replcias" in r.stderr and "did you mean 'replicas'" in r.stderr and "service.yaml:" in r.stderr
    assert r.stderr.strip().count("\n") == 0


@pytest.mark.slow
def test_init_makes_a_project_that_runs(tmp_path: Path):
    project = Project(tmp_path / "fresh")
    project.root.mkdir()
    project.cli("init", ".")
    try:
        project.cli("up", "--detach", "--port", str(project.port))
        r = loopback.get(f"{project.url}/hello/")
        assert r.status_code == 200 and r.text.startswith("hello from ")
        assert project.versions("hello")["stable"]["ready"] == 2
    finally:
        procs = project.recorded_processes()
        project.cli("down")
        assert project.running(procs) == []
    again = project.cli("init", ".", check=False)
    assert again.returncode == 2 and "already exists" in again.stderr
