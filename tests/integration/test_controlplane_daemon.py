"""The control plane through the real CLI and daemon: failed deploys and starts leave nothing
behind, hand changes do not fight an automatic rollout."""

from __future__ import annotations

import os
import shutil
import signal
import socket
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from shiploop.procs import is_running
from tests import loopback
from tests.conftest import wait_until
from tests.daemon_helpers import Project


@pytest.fixture
def project(project: Project) -> Project:
    project.add_service("echo", "/echo/")
    return project


def desired_state(project: Project) -> dict[str, list[tuple[Any, ...]]]:
    return {
        "deployments": project._query("SELECT service, version, track, weight, state FROM deployments ORDER BY 1, 2"),
        "replicas": project._query("SELECT * FROM replicas ORDER BY 1, 2, 3"),
        "header_routes": project._query("SELECT * FROM header_routes ORDER BY 1, 2, 3"),
    }


def served_by(url: str, n: int) -> Counter[str]:
    seen: Counter[str] = Counter()
    with loopback.client() as c:
        for _ in range(n):
            r = c.get(url)
            assert r.status_code == 200, r.text
            seen[r.json()["version"]] += 1
    return seen


@pytest.mark.slow  # over 4 s alone: with `make test`, not `make test-fast`
def test_deploy_that_cannot_start_exits_2_and_changes_nothing(project: Project):
    project.cli("up", "--detach", "--port", str(project.port))
    stable = project.versions("echo")["stable"]["id"]
    before = desired_state(project)
    spec = project.root / "echo" / "service.yaml"
    spec.write_text(spec.read_text().replace("command: [python, app.py]", "command: [/nonexistent/bin]"))

    r = project.cli("deploy", "echo", "--weight", "20", check=False)
    assert r.returncode == 2 and "cannot start '/nonexistent/bin'" in r.stderr, r.stderr
    assert r.stderr.strip().count("\n") == 0
    assert desired_state(project) == before
    assert list(project.versions("echo")) == ["stable"]
    assert served_by(f"{project.url}/echo/x", 20) == Counter({stable: 20})
    promote = project.cli("promote", "echo", check=False)
    assert promote.returncode == 2 and "no canary" in promote.stderr


@pytest.mark.slow  # 20-50 s: with `make test`, not `make test-fast`
def test_failed_up_on_the_readopt_path_leaves_serving_replicas_alone(project: Project):
    project.cli("up", "--detach", "--port", str(project.port))
    replicas = [(int(p), int(s)) for p, s in project._query("SELECT pid, start_time FROM replicas")]
    daemon, envoy = project.daemon_info(), project.envoy_info()
    assert envoy is not None
    os.kill(daemon["pid"], signal.SIGKILL)
    os.kill(envoy["pid"], signal.SIGKILL)
    wait_until(lambda: not is_running(daemon["pid"], daemon["start_time"]), 5, what="daemon to die")
    wait_until(lambda: not is_running(envoy["pid"], envoy["start_time"]), 5, what="envoy to die")

    with socket.socket() as taken:  # the new Envoy cannot listen: the start fails
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the dead Envoy's connections linger

        def took_it() -> bool:
            # The killed Envoy's leader shows as gone while its other threads still hold
            # the listening socket for a moment: bind failed once in three runs without waiting.
            try:
                taken.bind(("127.0.0.1", project.port))
            except OSError:
                return False
            return True

        wait_until(took_it, 5, interval=0.05, what="the gateway port to be free to take")
        taken.listen()
        r = project.cli("up", "--detach", check=False)
    assert r.returncode == 2 and f"gateway port {project.port} is in use" in r.stderr, r.stderr
    assert "replicas that were running are left as they were" in r.stderr
    assert "envoy is not running" in r.stderr  # the hint says what is true
    assert project.running(replicas) == replicas, "a failed re-adoption must not stop serving replicas"

    # The hint's command works, and adopts the very same replicas.
    project.cli("up", "--detach")
    assert project.running(replicas) == replicas
    assert sorted((int(p), int(s)) for p, s in project._query("SELECT pid, start_time FROM replicas")) == sorted(
        replicas
    )
    stable = project.versions("echo")["stable"]["id"]
    assert served_by(f"{project.url}/echo/x", 10) == Counter({stable: 10})


def rollout_of(project: Project) -> dict[str, Any]:
    """What `shiploop rollout status echo --json` prints, from the API (no CLI process)."""
    return dict(project.api_get("/v1/services/echo/rollout"))


@pytest.mark.slow  # 20-50 s: with `make test`, not `make test-fast`
def test_hand_changes_during_a_rollout_are_refused_unless_forced(project: Project):
    project.cli("up", "--detach", "--port", str(project.port))
    project.set_env("echo", {"GREETING": "v2"})
    project.cli("rollout", "echo")
    # Without traffic the rollout waits at its first step: it owns the service.
    assert rollout_of(project)["state"] == "progressing"
    before = desired_state(project)
    for args in [
        ("route", "echo", "--weight", "canary=50"),
        ("route", "echo", "--header", "x-user=ana", "--to", "canary"),
        ("deploy", "echo"),
        ("promote", "echo"),
        ("rollback", "echo"),
    ]:
        r = project.cli(*args, check=False)
        assert r.returncode == 2, (args, r.stderr)
        line = r.stderr.strip()
        assert line.count("\n") == 0, line
        assert "rollout #1" in line and "shiploop rollout pause|abort|promote echo" in line and "--force" in line
    assert desired_state(project) == before
    assert rollout_of(project)["state"] == "progressing"

    project.cli("route", "echo", "--weight", "canary=50", "--force")
    assert rollout_of(project)["state"] == "paused"
    assert project.versions("echo")["canary"]["weight"] == 50
    api = f"http://127.0.0.1:{project.daemon_info()['api_port']}"
    taken = [e for e in loopback.get(f"{api}/v1/events").json() if e["kind"] == "rollout-taken-over"]
    assert len(taken) == 1 and taken[0]["evidence"]["rollout"] == 1 and "--force" in taken[0]["message"]
    # Paused, the rollout still owns the service: another hand change needs --force again.
    assert project.cli("route", "echo", "--weight", "canary=0", check=False).returncode == 2
    project.cli("rollout", "abort", "echo")
    project.cli("route", "echo", "--weight", "stable=100")


@pytest.mark.slow  # a rollout started: with `make test`, not `make test-fast`
def test_a_hand_change_sent_while_a_rollout_starts_waits_for_it_and_is_refused(project: Project):
    """A deploy at 50% sent while a rollout's start was deploying its candidate was answered 200, and a
    moment later the rollout set the weights of its first step: the guard had looked before the rollout
    existed. It now waits for the start to end, then refuses as during any rollout."""
    project.cli("up", "--detach", "--port", str(project.port))
    stable = project.versions("echo")["stable"]["id"]
    ready = project.root / "candidate-may-be-ready"
    project.set_env("echo", {"READY_FILE": str(ready)})  # the candidate's start waits for this file
    api = f"http://127.0.0.1:{project.daemon_info()['api_port']}"
    auth = project.write_auth()
    with ThreadPoolExecutor(2) as pool:
        rollout = pool.submit(loopback.post, f"{api}/v1/services/echo/rollout", headers=auth, timeout=60)

        def candidate_started() -> bool:
            return len(project._query("SELECT DISTINCT version FROM replicas")) == 2

        wait_until(candidate_started, 30, what="the rollout's candidate to start")
        assert loopback.get(f"{api}/v1/services/echo/rollout").status_code == 404  # no rollout yet: it starts
        deploy = pool.submit(
            loopback.post, f"{api}/v1/services/echo/deploy", json={"weight": 50}, headers=auth, timeout=60
        )
        ready.touch()
        started, by_hand = rollout.result(), deploy.result()
    assert started.status_code == 200, started.text
    assert by_hand.status_code == 409 and "rollout #1" in by_hand.json()["error"], by_hand.text
    versions = project.versions("echo")
    assert versions["stable"]["id"] == stable and versions["canary"]["weight"] == started.json()["steps"][0]
    project.cli("rollout", "abort", "echo")


@pytest.mark.slow  # 20-50 s: with `make test`, not `make test-fast`
def test_up_after_a_rollback_serves_the_last_stable_and_says_the_tree_differs(project: Project):
    project.cli("up", "--detach", "--port", str(project.port))
    stable = project.versions("echo")["stable"]["id"]
    project.set_env("echo", {"GREETING": "rejected"})
    project.cli("deploy", "echo", "--weight", "50")
    project.cli("rollback", "echo")
    project.cli("down")

    out = project.cli("up", "--detach", "--port", str(project.port)).stdout
    assert f"echo: working tree differs from stable {stable}; ship it with: shiploop rollout echo" in out
    assert project.versions("echo")["stable"]["id"] == stable
    assert served_by(f"{project.url}/echo/x", 10) == Counter({stable: 10})


@pytest.mark.slow  # 20-50 s: with `make test`, not `make test-fast`
def test_failed_readoption_with_envoy_alive_keeps_serving_and_says_so(project: Project):
    project.cli("up", "--detach", "--port", str(project.port))
    stable = project.versions("echo")["stable"]["id"]
    daemon = project.daemon_info()
    os.kill(daemon["pid"], signal.SIGKILL)
    wait_until(lambda: not is_running(daemon["pid"], daemon["start_time"]), 5, what="daemon to die")
    (dead_pid, dead_start), *serving = [
        (int(p), int(s)) for p, s in project._query("SELECT pid, start_time FROM replicas ORDER BY idx")
    ]
    os.kill(dead_pid, signal.SIGKILL)
    wait_until(lambda: not is_running(dead_pid, dead_start), 5, what="a replica to die")
    # The snapshot the dead replica would restart from is gone: re-adoption fails.
    shutil.rmtree(project.root / ".shiploop" / "versions" / "echo" / stable)

    r = project.cli("up", "--detach", check=False)
    assert r.returncode == 2 and "cannot start" in r.stderr, r.stderr
    assert "left as they were and envoy keeps serving the last routes" in r.stderr
    envoy = project.envoy_info()
    assert envoy is not None
    assert project.running([*serving, (envoy["pid"], envoy["start_time"])]) == [
        *serving,
        (envoy["pid"], envoy["start_time"]),
    ]
    assert served_by(f"{project.url}/echo/x", 10) == Counter({stable: 10})
