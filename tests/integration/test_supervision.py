"""Supervision under faults: Envoy killed, a store that refuses writes, two `up` at once,
`down` after the daemon was killed. Real daemon, real Envoy, real processes."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shiploop.loadgen import background_load
from shiploop.procs import is_running
from tests import loopback
from tests.conftest import wait_until
from tests.daemon_helpers import SHIPLOOP, Project
from tests.faults import Losses, can_chattr, set_immutable, store_files


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    p = Project(tmp_path / "proj")
    p.root.mkdir()
    (p.root / "shiploop.yaml").write_text("name: testproj\n")
    p.add_service("echo", "/echo/")
    yield p
    set_immutable(store_files(p.root / ".shiploop"), on=False)
    procs = p.recorded_processes() if (p.root / ".shiploop" / "state.db").exists() else []
    p.cli("down", check=False)
    assert p.running(procs) == [], "down left processes behind"


def api(project: Project) -> str:
    return f"http://127.0.0.1:{project.daemon_info()['api_port']}"


def events(project: Project, kind: str) -> list[dict[str, Any]]:
    return [e for e in loopback.get(f"{api(project)}/v1/events", params={"limit": 1000}).json() if e["kind"] == kind]


def stable_ready(project: Project, api_url: str) -> int:
    """Ready replicas of echo's stable version, from the API (faster than the CLI, for tight polls)."""
    services = loopback.get(f"{api_url}/v1/status").json()["services"]
    return int(next(v["ready"] for v in services[0]["versions"] if v["track"] == "stable"))


def replica_processes(project: Project) -> set[int]:
    """Pids of the processes running in the project's version snapshots (the replicas), from /proc."""
    versions = str(project.root / ".shiploop" / "versions")
    found = set()
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and os.readlink(entry / "cwd").startswith(versions):
                found.add(int(entry.name))
        except OSError:
            continue
    return found


def serves(url: str) -> bool:
    try:
        return loopback.get(url, timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.slow  # over 4 s alone: with `make test`, not `make test-fast`
def test_envoy_killed_or_quit_is_restarted_within_2s_and_counted(project: Project):
    project.cli("up", "--detach", "--port", str(project.port))
    url = f"{project.url}/echo/x"
    first = project.envoy_info()
    assert first is not None
    losses = Losses()
    with background_load(url, rps=100, timeout_s=2.0, on_result=losses.record) as load:
        load.wait_until(lambda r: r.total >= 50, 10)
        killed_at = time.monotonic()
        os.kill(first["pid"], signal.SIGKILL)
        # A mutation during the gap waits for the new Envoy (or says why not, in one line).
        route = subprocess.Popen(
            [*SHIPLOOP, "route", "echo", "--weight", "stable=100"],
            cwd=project.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_until(lambda: serves(url), 2.0, what="the gateway to serve again")
        assert time.monotonic() - killed_at < 2.0
        out, err = route.communicate(timeout=60)
        assert route.returncode == 0 and "Traceback" not in err, err
        mark = losses.mark()
        load.wait_until(lambda r: r.total >= mark[0] + 100, 10)
    lost, gap = losses.since(mark)
    assert lost == 0, f"lost {lost} requests after the gateway served again"
    lost, gap = losses.since((0, 0))
    assert gap < 2.0, f"gateway down for {gap:.2f}s ({lost} requests lost)"

    second = project.envoy_info()
    assert second is not None and second["pid"] != first["pid"] and is_running(second["pid"], second["start_time"])
    status = project.status()
    assert status["envoy"]["restarts"] == 1 and status["envoy"]["pid"] == second["pid"]
    assert status["degraded"] == []
    restarted = events(project, "envoy-restarted")
    assert len(restarted) == 1 and restarted[0]["evidence"]["old_pid"] == first["pid"]

    # /quitquitquit on the admin socket stops Envoy as surely; only we can reach it (see test_security).
    admin = httpx.Client(transport=httpx.HTTPTransport(uds=status["envoy"]["admin"]), base_url="http://envoy")
    assert admin.post("/quitquitquit").status_code == 200
    wait_until(lambda: project.status()["envoy"]["restarts"] == 2, 5, interval=0.1, what="a second restart")
    wait_until(lambda: serves(url), 2.0, what="the gateway to serve again")
    assert "envoy restarted 2 time(s)" in project.cli("status").stdout


@pytest.mark.slow  # over 4 s alone: with `make test`, not `make test-fast`
def test_store_refusing_writes_degrades_supervision_then_recovers(project: Project):
    state = project.root / ".shiploop"
    project.cli("up", "--detach", "--port", str(project.port))
    skip = can_chattr(state)
    if skip:
        pytest.skip(skip)
    url = f"{project.url}/echo/x"
    replicas = {pid for pid, _ in project.recorded_processes()} - {project.envoy_info()["pid"]}  # type: ignore[index]
    victim = sorted(replicas)[0]
    losses = Losses()
    with background_load(url, rps=50, timeout_s=2.0, on_result=losses.record) as load:
        load.wait_until(lambda r: r.total >= 25, 10)
        set_immutable(store_files(state), on=True)
        try:
            # Supervision goes on: a replica killed now is restarted, from memory.
            api_url = api(project)
            os.kill(victim, signal.SIGKILL)

            def restarted() -> bool:
                running = replica_processes(project)
                return victim not in running and len(running) == 2 and stable_ready(project, api_url) == 2

            wait_until(restarted, 10, interval=0.1, what="the killed replica to be restarted")
            wait_until(lambda: project.status()["degraded"], 6, interval=0.2, what="status to show the store degraded")
            line = project.status()["degraded"][0]
            assert line.startswith("degraded: state store not writable"), line
            assert "degraded: state store not writable" in project.cli("status").stdout
            # A change of desired state cannot be kept: refused in one line, nothing changed.
            route = project.cli("route", "echo", "--header", "x-user=ana", "--to", "stable", check=False)
            assert route.returncode != 0 and "the state store is not writable" in route.stderr, route.stderr
            assert "Traceback" not in route.stderr and route.stderr.strip().count("\n") == 0, route.stderr
        finally:
            set_immutable(store_files(state), on=False)
        # It resumes by itself: the records it could not write are written now.
        wait_until(lambda: project.status()["degraded"] == [], 8, interval=0.2, what="the store to be writable again")
        recovered = losses.total
        load.wait_until(lambda r: r.total >= recovered + 50, 10)
    assert losses.since((0, 0))[0] == 0, f"serving must go on while the store refuses writes: {losses.failures}"
    assert project.status()["services"][0]["header_routes"] == [], "a refused change must leave no trace"
    crashed = events(project, "replica-crashed")
    assert crashed and crashed[-1]["evidence"]["restarts"] >= 1
    assert events(project, "store-recovered")
    pids = {pid for pid, _ in project.recorded_processes()}
    assert victim not in pids and len(pids) == 3, "the restarted replica's record must be written once it can be"
    log = (state / "logs" / "daemon.log").read_text()
    assert "state store" in log and "writable again" in log


@pytest.mark.slow  # over 4 s alone: with `make test`, not `make test-fast`
def test_two_ups_at_once_one_wins_and_down_after_kill_9_stops_everything(project: Project):
    results = project.ups_at_once(2)
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 2], results
    _, _, loser_err = next(r for r in results if r[0] == 2)
    daemon = project.daemon_info()
    assert f"pid {daemon['pid']}" in loser_err and "Traceback" not in loser_err, loser_err
    # The winner serves, with its store intact.
    assert project.versions("echo")["stable"]["ready"] == 2
    assert serves(f"{project.url}/echo/x")
    procs = project.recorded_processes()
    assert len(procs) == 3 and project.running(procs) == procs

    os.kill(daemon["pid"], signal.SIGKILL)
    wait_until(lambda: not is_running(daemon["pid"], daemon["start_time"]), 5, what="the daemon to die")
    # A record lost (the daemon died between starting a replica and writing its row): still found.
    db = sqlite3.connect(project.root / ".shiploop" / "state.db")
    with db:
        db.execute("DELETE FROM replicas WHERE idx = 0")
    db.close()
    down = project.cli("down")
    assert "stopped 3 leftover processes" in down.stdout
    assert project.running(procs) == []
