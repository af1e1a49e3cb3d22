"""A rollout judged from a real Prometheus decides as the embedded Envoy source does (issue 9, done when:
same exit code; counts within one scrape interval).

One daemon with `up --prometheus` and `metrics: {source: prometheus}` rolls out a candidate
failing 30% of requests under load, and decides from Prometheus. Meanwhile the test reads
Envoy's own counters through the admin socket every 0.25 s, as the embedded source does, and
afterwards judges the same rollout from them with the same pure judge (`rollout.core.judge`),
step for step from the moment its weights were set. Both must roll back on the same rule, and
the counts Prometheus gave for the step must be Envoy's, within one scrape interval of traffic.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from shiploop.gateway.admin import EnvoyAdmin
from shiploop.loadgen import background_load
from shiploop.naming import RolloutState, cluster_name
from shiploop.rollout.core import Move, apply, judge
from shiploop.rollout.readings import Observation, Pair, Reading
from shiploop.rollout.record import RolloutRecord
from shiploop.store.db import rollout_row
from shiploop.telemetry.scrape_config import SCRAPE_INTERVAL_S
from tests.conftest import wait_until
from tests.daemon_helpers import Project

RPS = 40
POLICY = """rollout:
  steps: [50, 100]
  min_step: 6s
  max_step: 40s
  min_samples: 40
  guardrails: [{metric: error_rate, tolerance: 0.01}]
  limits: []
"""


@pytest.fixture
def project(project: Project) -> Project:
    if shutil.which("prometheus") is None:
        pytest.skip("prometheus not installed (Debian: apt-get install prometheus; make test does it as root)")
    (project.root / "shiploop.yaml").write_text("name: testproj\nmetrics: {source: prometheus}\n")
    project.add_service("echo", "/echo/", extra=POLICY)
    return project


class EnvoySampler(threading.Thread):
    """Envoy's cumulative request and 5xx counters of every echo cluster, read like the embedded source does."""

    def __init__(self, admin_socket: Path, interval_s: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.admin_socket = admin_socket
        self.interval_s = interval_s
        self.samples: list[tuple[float, float, dict[str, Any]]] = []  # asked at, answered at, the counters
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._loop())
        except BaseException as e:  # reported by the test, not lost in the thread
            self.error = e

    async def _loop(self) -> None:
        admin = EnvoyAdmin(self.admin_socket)
        try:
            while not self.stop.is_set():
                at = time.time()
                stats = await admin.stats(r"^cluster\.echo_[0-9a-f]+\.(upstream_rq_completed|upstream_rq_5xx)$")
                self.samples.append((at, time.time(), stats))
                await asyncio.sleep(self.interval_s)
        finally:
            await admin.close()

    def reading(self, version: str, at: float) -> Reading:
        """The version's counters in the last sample answered by `at` (its `ts`: when it was asked for).

        Envoy's counters only grow, so a scrape that began at `at` counted at least these.
        """
        t, _, stats = max((s for s in self.samples if s[1] <= at), key=lambda s: s[1])
        prefix = f"cluster.{cluster_name('echo', version)}."
        return Reading(
            t, int(stats.get(prefix + "upstream_rq_completed", 0)), int(stats.get(prefix + "upstream_rq_5xx", 0))
        )


def latest_rollout(project: Project) -> tuple[RolloutRecord, float]:
    """The record as the daemon wrote it, and when it started its first step (the rollout-step event)."""
    db = sqlite3.connect(project.root / ".shiploop" / "state.db")
    db.row_factory = sqlite3.Row
    try:
        r = db.execute("SELECT * FROM rollouts ORDER BY id DESC LIMIT 1").fetchone()
        started = db.execute("SELECT ts FROM events WHERE kind='rollout-started' ORDER BY id DESC LIMIT 1").fetchone()
    finally:
        db.close()
    return RolloutRecord.from_row(rollout_row(r)), float(started["ts"])


def judge_from_envoy(live: RolloutRecord, sampler: EnvoySampler, deployed_at: float) -> tuple[Move, str, float, float]:
    """The same rollout judged from Envoy's counters: its first step from a reading taken as the weights
    were set (as the embedded source's controller does), then once a second, as the controller ticks."""
    shadow = RolloutRecord(0, live.service, live.candidate, live.baseline, live.policy, RolloutState.PROGRESSING, 0, 0)

    def pair(at: float) -> Pair:
        return Pair(sampler.reading(live.candidate, at), sampler.reading(live.baseline, at))

    # The candidate got no traffic before its weights were set (it is deployed at 0%): the step
    # starts from the last sample before its first request, as the embedded source's would (at
    # most a sample interval after the weights were set).
    answered = [t for _, t, _ in sampler.samples if t >= deployed_at]
    served = next(i for i, t in enumerate(answered) if sampler.reading(live.candidate, t).requests > 0)
    first = answered[max(0, served - 1)]
    shadow.begin_step(0, first, pair(first))
    window: tuple[Reading, ...] = ()
    at = first + 1.0
    while at <= sampler.samples[-1][1]:
        verdict = judge(shadow, Observation(pair(at)), at, window)
        apply(shadow, verdict)
        window = verdict.window
        if verdict.move not in (Move.WATCH, Move.HOLDING):
            return verdict.move, verdict.rule, first, at
        at += 1.0
    raise AssertionError("the embedded source's judge did not decide while the test sampled envoy")


def test_a_failing_candidate_is_rolled_back_from_prometheus_as_from_envoy(project: Project):
    project.cli("up", "--detach", "--prometheus", "--port", str(project.port))
    envoy = project.envoy_info()
    assert envoy is not None
    project.set_env("echo", {"FAIL_RATE": "0.3"})
    sampler = EnvoySampler(Path(envoy["admin_socket"]))
    sampler.start()
    try:
        with background_load(f"{project.url}/echo/x", rps=RPS) as load:
            load.wait_until(lambda r: r.total >= RPS, 10)
            r = project.cli("rollout", "echo", "--wait", "--json", check=False, timeout=60)
            done = time.time()  # one more Envoy sample past the decision:
            wait_until(lambda: sampler.samples[-1][1] > done, 5, interval=0.05, what="an envoy sample")
    finally:
        sampler.stop.set()
        sampler.join(5)
    assert sampler.error is None, sampler.error
    assert r.returncode == 3, r.stdout + r.stderr  # rolled back, from Prometheus's counts
    live, started = latest_rollout(project)
    assert live.state == RolloutState.ROLLED_BACK and live.rule == "harm", live.reason
    (step,) = live.steps
    assert step.end is not None and step.ended_at is not None

    # The embedded source, on the same traffic, with the same judge: rolled back on the same rule.
    move, rule, weights_set, decided_at = judge_from_envoy(live, sampler, deployed_at=started)
    assert (move, rule) == (Move.ROLLBACK, "harm")

    # The counts Prometheus gave for the step are Envoy's counters at the same scrapes...
    for who in ("candidate", "baseline"):
        version = getattr(live, who)
        start, end = getattr(step.start, who), getattr(step.end, who)
        rate = max(1.0, (end.requests - start.requests) / max(1.0, end.ts - start.ts))

        def envoy_at(at: float, version: str = version, rate: float = rate) -> tuple[Reading, float]:
            """Envoy's counters sampled last before `at`, and the traffic that may have come since."""
            got = sampler.reading(version, at)
            return got, rate * (at - got.ts + 0.1) + 2

        (envoy_start, slack_start), (envoy_end, slack_end) = envoy_at(start.ts), envoy_at(end.ts)
        assert 0 <= start.requests - envoy_start.requests <= slack_start, (who, start, envoy_start)
        assert 0 <= end.requests - envoy_end.requests <= slack_end, (who, end, envoy_end)
        assert 0 <= end.errors - envoy_end.errors <= slack_end, (who, end, envoy_end)
        # ...and the step's counts, against what Envoy counted over the step's own time (from its start
        # to its decision), differ by at most one scrape interval of the version's traffic.
        (from_, slack_from), (to, slack_to) = envoy_at(step.started_at), envoy_at(step.ended_at)
        prom_count, envoy_count = end.requests - start.requests, to.requests - from_.requests
        assert abs(prom_count - envoy_count) <= rate * SCRAPE_INTERVAL_S + slack_from + slack_to, (
            who,
            prom_count,
            envoy_count,
        )
    print(
        f"decided from prometheus {step.ended_at - weights_set:.1f} s after the weights were set (its step "
        f"began {step.started_at - weights_set:.1f} s after them, at a scrape of both versions), "
        f"from envoy (replayed) {decided_at - weights_set:.1f} s; the step's counts from prometheus: "
        f"candidate {step.end.candidate.requests - step.start.candidate.requests} requests, "
        f"{step.end.candidate.errors - step.start.candidate.errors} 5xx"
    )
