"""Rollouts end to end: real Envoy, real replicas, real load, decisions made by the daemon."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from shiploop.loadgen import background_load
from shiploop.procs import is_running
from tests import loopback
from tests.conftest import wait_until
from tests.daemon_helpers import Project

FAST_POLICY = """rollout:
  steps: [20, 50, 100]
  min_step: 3s
  max_step: 1m
  min_samples: 40
"""




def rollout_state(project: Project) -> dict[str, Any]:
    """What `shiploop rollout status echo --json` prints, from the API."""
    return dict(project.api_get("/v1/services/echo/rollout"))


@pytest.mark.slow
def test_candidate_failing_a_fifth_of_requests_is_rolled_back_within_30s(project: Project):
    project.add_service("echo", "/echo/")
    project.cli("up", "--detach", "--port", str(project.port))
    project.set_env("echo", {"FAIL_RATE": "0.2"})
    with background_load(f"{project.url}/echo/x", rps=100, capture_headers=("x-shiploop-version",)) as load:
        load.wait_until(lambda r: r.total >= 100, 10)
        started = time.time()
        r = project.cli("rollout", "echo", "--wait", "--json", check=False, timeout=60)
        took = time.time() - started
    assert r.returncode == 3, r.stdout + r.stderr
    outcome = json.loads(r.stdout)
    assert outcome["state"] == "rolled_back"
    assert "error_rate" in outcome["reason"] and outcome["rule"] in ("harm", "limit")
    # Simulated with the same judge (1,000 runs, 20% errors at the 5% step, 100 rps): p50 11 s,
    # p90 17 s, p99 24 s, max 32 s; 23% of runs take 15 s or more, so 15 s was a flaky bound.
    assert outcome["updated_at"] - outcome["started_at"] < 30, (outcome["reason"], outcome["progress"])
    assert took < 45  # plus deploying the candidate and the CLI
    # All traffic is back on stable, and the candidate is gone.
    versions = project.versions("echo")
    assert versions["stable"]["weight"] == 100
    wait_until(lambda: "retiring" not in project.versions("echo"), 15, what="candidate to stop")
    report = load.report()
    assert report.status_counts.get(500, 0) > 0  # the candidate really did fail some requests


@pytest.mark.slow
def test_candidate_slowing_a_fifth_of_requests_by_100ms_is_rolled_back(project: Project):
    # 10 s steps, not 3: the test ends at the rollback, so they cost time only when the evidence is slow
    # to come. In one full run, other tests' load put 15% of the baseline's requests above the p95 frozen
    # before the rollout (5% when quiet); after 3 s steps the candidate had 229 requests, too few to
    # show harm, and reached 100% as inconclusive.
    project.add_service("echo", "/echo/", extra=FAST_POLICY.replace("min_step: 3s", "min_step: 10s"))
    project.cli("up", "--detach", "--port", str(project.port))
    project.set_env("echo", {"SLOW_RATE": "0.2", "SLOW_MS": "100"})
    with background_load(f"{project.url}/echo/x", rps=100):
        r = project.cli("rollout", "echo", "--wait", "--json", check=False, timeout=90)
    assert r.returncode == 3, r.stdout + r.stderr
    outcome = json.loads(r.stdout)
    assert outcome["state"] == "rolled_back" and "latency" in outcome["reason"], outcome["reason"]


@pytest.mark.slow
def test_identical_candidate_is_promoted_through_every_step(project: Project):
    """The default policy's long horizon (60 s steps, ~240 s to promote) is covered by the fake-clock
    unit tests and bench/rollouts.py; here the same machinery runs on a short test policy."""
    project.add_service("echo", "/echo/", extra=FAST_POLICY)
    project.cli("up", "--detach", "--port", str(project.port))
    stable = project.versions("echo")["stable"]["id"]
    (project.root / "echo" / "README.txt").write_text("content differs, behaviour does not\n")
    with background_load(f"{project.url}/echo/x", rps=100) as load:
        r = project.cli("rollout", "echo", "--wait", "--json", check=False, timeout=90)
    assert r.returncode == 0, r.stdout + r.stderr
    outcome = json.loads(r.stdout)
    assert outcome["state"] == "promoted"
    assert [s["weight"] for s in outcome["progress"]] == [20, 50, 100]
    assert all(s["candidate"]["requests"] >= 40 for s in outcome["progress"])  # min_samples at every step
    assert project.versions("echo")["stable"]["id"] == outcome["candidate"] != stable
    assert load.report().failed == 0, load.report().render()


@pytest.mark.slow
def test_good_candidate_is_promoted_when_a_baseline_replica_restarts_mid_rollout(project: Project):
    """Issue 6 item 10: an endpoint change updates the cluster in place, and Envoy may then start its 5xx
    counter and latency histogram again from zero (requests carry on). The old controller read that
    as lost evidence ("envoy restarted") and rolled a good candidate back, naming no real cause.

    Whether Envoy starts them again is a race inside Envoy (the old cluster's stats are freed before
    or after the new cluster takes them): alone it happened in every run, under CI's load it once did
    not. So the rule itself is pinned by the fake-clock unit tests
    (tests/unit/test_rollout_controller.py, "rebased"); here the real restart must not cost the
    promotion, and a rebase, when Envoy made one, must name the counter that went down."""
    policy = FAST_POLICY.replace("min_step: 3s", "min_step: 8s")
    project.add_service("echo", "/echo/", extra=policy)
    project.cli("up", "--detach", "--port", str(project.port))
    stable = project.versions("echo")["stable"]["id"]
    (project.root / "echo" / "README.txt").write_text("v2\n")
    with background_load(f"{project.url}/echo/x", rps=100) as load:
        # Counts before the rollout: a reset to zero stays below the step's start for seconds.
        load.wait_until(lambda r: r.total >= 500, 15)
        project.cli("rollout", "echo")
        wait_until(lambda: rollout_state(project)["last"] is not None, 15, interval=0.3, what="a first evaluation")
        ((pid,),) = project._query(f"SELECT pid FROM replicas WHERE version='{stable}' AND idx=0")
        os.kill(int(pid), signal.SIGKILL)  # the supervisor restarts it: the cluster's endpoints change twice
        r = project.cli("rollout", "status", "echo", "--wait", "--json", check=False, timeout=90)
    outcome = json.loads(r.stdout)
    assert r.returncode == 0 and outcome["state"] == "promoted", outcome["reason"]
    api = f"http://127.0.0.1:{project.daemon_info()['api_port']}"
    events = loopback.get(f"{api}/v1/events", params={"service": "echo", "limit": 500}).json()
    crashed = [e for e in events if e["kind"] == "replica-crashed"]
    assert any(f"echo@{stable}#0" in e["message"] for e in crashed), [(e["kind"], e["message"]) for e in events]
    rebased = [e["message"] for e in events if e["kind"] == "rollout-rebased"]
    assert all("went down" in m and "evidence so far kept" in m for m in rebased), rebased


@pytest.mark.slow
def test_daemon_killed_mid_rollout_resumes_and_finishes(project: Project):
    project.add_service("echo", "/echo/", extra=FAST_POLICY)
    project.cli("up", "--detach", "--port", str(project.port))
    (project.root / "echo" / "README.txt").write_text("v2\n")
    with background_load(f"{project.url}/echo/x", rps=100) as load:
        project.cli("rollout", "echo")
        wait_until(lambda: rollout_state(project)["step"] >= 1, 30, interval=0.5, what="second step")
        daemon = project.daemon_info()
        os.kill(daemon["pid"], signal.SIGKILL)
        wait_until(lambda: not is_running(daemon["pid"], daemon["start_time"]), 5, what="daemon to die")
        project.cli("up", "--detach")
        r = project.cli("rollout", "status", "echo", "--wait", "--json", check=False, timeout=90)
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["state"] == "promoted"
    api = f"http://127.0.0.1:{project.daemon_info()['api_port']}"
    kinds = [e["kind"] for e in loopback.get(f"{api}/v1/events", params={"service": "echo"}).json()]
    assert "rollout-resumed" in kinds and kinds.index("rollout-resumed") < kinds.index("rollout-promoted")
    assert load.report().failed == 0, load.report().render()


@pytest.mark.slow
def test_on_no_data_hold_holds_when_the_canary_gets_no_traffic(project: Project):
    policy = FAST_POLICY.replace("max_step: 1m", "max_step: 4s") + "  on_no_data: hold\n"
    project.add_service("echo", "/echo/", extra=policy)
    project.cli("up", "--detach", "--port", str(project.port))
    (project.root / "echo" / "README.txt").write_text("v2\n")
    r = project.cli("rollout", "echo", "--wait", "--json", check=False, timeout=60)  # no load at all
    assert r.returncode == 4, r.stdout + r.stderr
    outcome = json.loads(r.stdout)
    assert outcome["state"] == "held" and outcome["step"] == 0
    # Held means the traffic stays where it was until a person decides.
    assert project.versions("echo")["canary"]["weight"] == 20
    aborted = json.loads(project.cli("rollout", "abort", "echo", "--json").stdout)
    assert aborted["state"] == "aborted"
    assert project.versions("echo")["stable"]["weight"] == 100


class Receiver:
    """An HTTP endpoint in the test process that records JSON posts (webhooks, alerts)."""

    def __init__(self, status: int = 200) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.posts: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.posts.append({"path": self.path, **json.loads(body)})
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        import threading

        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(status=503)
    yield r
    r.close()


@pytest.mark.slow
def test_refusing_pre_rollout_webhook_fails_the_rollout_and_alerts(project: Project, receiver: Receiver):
    hooks = (
        f"  webhooks: [{{when: pre-rollout, url: '{receiver.url}/gate', timeout: 2s}}]\n"
        f"  alerts: [{{url: '{receiver.url}/alert', on: [rollback]}}]\n"
    )
    project.add_service("echo", "/echo/", extra=FAST_POLICY + hooks)
    project.cli("up", "--detach", "--port", str(project.port))
    (project.root / "echo" / "README.txt").write_text("v2\n")
    r = project.cli("rollout", "echo", "--wait", "--json", check=False, timeout=60)
    assert r.returncode == 3, r.stdout + r.stderr
    outcome = json.loads(r.stdout)
    assert outcome["state"] == "failed" and "pre-rollout webhook" in outcome["reason"] and "503" in outcome["reason"]
    gate = next(p for p in receiver.posts if p["path"] == "/gate")
    assert gate["phase"] == "pre-rollout" and gate["candidate"] == outcome["candidate"]
    wait_until(lambda: any(p["path"] == "/alert" for p in receiver.posts), 5, what="the alert")
    alert = next(p for p in receiver.posts if p["path"] == "/alert")
    assert alert["event"] == "rollback" and outcome["candidate"] in alert["text"]  # Slack-compatible "text"
    assert project.versions("echo")["stable"]["weight"] == 100


@pytest.mark.slow
def test_ab_rollout_sends_only_matching_users_to_the_candidate(project: Project):
    policy = FAST_POLICY.replace("steps: [20, 50, 100]", "strategy: ab") + "  match: {header: x-beta, value: '1'}\n"
    project.add_service("echo", "/echo/", extra=policy)
    project.cli("up", "--detach", "--port", str(project.port))
    stable = project.versions("echo")["stable"]["id"]
    (project.root / "echo" / "README.txt").write_text("v2\n")
    url = f"{project.url}/echo/x"
    capture = ("x-shiploop-version",)
    answered: dict[str, list[tuple[float, str]]] = {"beta": [], "others": []}

    def record(group: str) -> Any:
        return lambda res: answered[group].append((time.time(), res.headers.get("x-shiploop-version", "")))

    with (
        background_load(url, rps=50, headers={"x-beta": "1"}, capture_headers=capture, on_result=record("beta")),
        background_load(url, rps=50, capture_headers=capture, on_result=record("others")),
    ):
        r = project.cli("rollout", "echo", "--wait", "--json", check=False, timeout=90)
    assert r.returncode == 0, r.stdout + r.stderr
    candidate = json.loads(r.stdout)["candidate"]
    api = f"http://127.0.0.1:{project.daemon_info()['api_port']}"
    events = loopback.get(f"{api}/v1/events", params={"service": "echo"}).json()
    routed_at = next(e["ts"] for e in events if e["kind"] == "header-route")
    promoted_at = next(e["ts"] for e in events if e["kind"] == "promoted")
    # While the experiment ran (half a second off each switch), x-beta users saw the candidate alone
    # and everyone else saw stable alone.
    during = {g: [v for t, v in rows if routed_at + 0.5 < t < promoted_at - 0.5] for g, rows in answered.items()}
    assert len(during["beta"]) > 100 and set(during["beta"]) == {f"echo@{candidate}"}
    assert len(during["others"]) > 100 and set(during["others"]) == {f"echo@{stable}"}
    assert project.versions("echo")["stable"]["id"] == candidate
    assert project.status()["services"][0]["header_routes"] == []  # the experiment's route is gone


@pytest.mark.slow
def test_mirror_rollout_rolls_back_a_failing_shadow_users_never_see_it(project: Project):
    policy = FAST_POLICY.replace("steps: [20, 50, 100]", "strategy: mirror")
    project.add_service("echo", "/echo/", extra=policy)
    project.cli("up", "--detach", "--port", str(project.port))
    project.set_env("echo", {"FAIL_RATE": "0.5"})
    with background_load(f"{project.url}/echo/x", rps=100) as load:
        load.wait_until(lambda r: r.total >= 50, 10)
        r = project.cli("rollout", "echo", "--wait", "--json", check=False, timeout=60)
    assert r.returncode == 3, r.stdout + r.stderr
    outcome = json.loads(r.stdout)
    assert outcome["state"] == "rolled_back" and "error_rate" in outcome["reason"]
    assert outcome["last"]["candidate"]["requests"] > 0  # the shadow was judged on mirrored copies
    report = load.report()
    assert report.failed == 0, report.render()  # users only ever saw stable's answers


@pytest.mark.slow
def test_rollout_whose_evidence_is_lost_rolls_back_to_stable(project: Project):
    """Daemon and Envoy both die mid-rollout: Envoy's counters restart at zero, so the
    candidate's record cannot be accounted for, and the new daemon must not keep traffic on it."""
    project.add_service("echo", "/echo/", extra=FAST_POLICY.replace("min_step: 3s", "min_step: 1m"))
    project.cli("up", "--detach", "--port", str(project.port))
    (project.root / "echo" / "README.txt").write_text("v2\n")
    with background_load(f"{project.url}/echo/x", rps=50):
        project.cli("rollout", "echo")
        wait_until(lambda: rollout_state(project)["last"] is not None, 10, interval=0.3, what="a first evaluation")
        daemon = project.daemon_info()
        envoy = project.envoy_info()
        assert envoy is not None
        os.kill(daemon["pid"], signal.SIGKILL)
        os.kill(envoy["pid"], signal.SIGKILL)
        wait_until(lambda: not is_running(envoy["pid"], envoy["start_time"]), 5, what="envoy to die")
        project.cli("up", "--detach")
        r = project.cli("rollout", "status", "echo", "--wait", "--json", check=False, timeout=30)
    assert r.returncode == 3, r.stdout + r.stderr
    outcome = json.loads(r.stdout)
    assert outcome["state"] == "rolled_back" and "cannot account" in outcome["reason"], outcome["reason"]
    assert outcome["rule"] == "lost_evidence" and "went down from" in outcome["reason"]
    assert project.versions("echo")["stable"]["weight"] == 100
