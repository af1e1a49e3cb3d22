"""How fast and at what cost a bad candidate is rolled back: our default policy against a Flagger-like one.

    .venv/bin/python -m bench.rollouts [--quick] [--real] [--runs N] [--aa-runs N] [--real-repeats N]

Scenarios at 100 rps, baseline at 0.1% errors and ~3 ms latency:
  (a) broken candidate: every request is a 5xx;
  (b) the candidate fails 5% of requests;
  (c) the candidate fails 1% of requests (0.1% -> 1%);
  (d) the candidate adds 100 ms to 20% of requests;
and an A/A run (candidate = baseline) for the false rollback rate.

Then the statistics tables of docs/analysis.md (issue 7), from
shiploop.analysis.simulation (vectorised, the judge's primitives; checked run
by run against the judge in tests/unit/test_rollout_sim.py), 4,000 runs each:
A/A with a 60 s incident shared by both versions, constant-rate A/A at 5 and
100 rps, SRM false holds, and power with the share caught before 100% exposure.

For each: the time to rollback, counted from the moment the candidate first
gets traffic, and the blast radius, the number of requests users got from the
candidate that failed (5xx) or were slow (>= +100 ms).

Default mode: a per-second simulation. Each second, 100 requests are split
between the arms at random with the current weight (as Envoy's
weighted_clusters do); each arm's errors are binomial and its latencies fall
into Envoy's histogram buckets (shiploop.gateway.render.HISTOGRAM_BUCKETS_MS)
as a multinomial draw. Latency is lognormal (median 3 ms, sigma 0.6), recorded
in whole milliseconds as Envoy records upstream_rq_time; scenario (d) adds
100 ms to 20% of the candidate's requests.
- ours: the default RolloutPolicy() judged every simulated second by the
  controller's own pure judge (shiploop.rollout.core.judge) on a rollout record
  built from the simulated counters: guardrails on every step's evidence,
  min_samples and SRM on the current step, limits on the last 10 s of it.
  'advance' moves to the next step, 'promote' and 'rollback' end the run.
- flagger: FixedThresholdPolicy (success rate >= 99% and p99 <= 500 ms per
  one-minute interval, rollback at 5 failed checks) with Flagger's default-like
  schedule: the candidate starts at 10%, each passing interval adds 10 up to 50,
  and a passing interval at 50% promotes. p99 is taken from the interval's
  buckets with linear interpolation, as Prometheus' histogram_quantile does.
Both policies get the same generator with the same seed per run index.

--real: our policy only, on the real system: the daemon (`shiploop up`), Envoy,
two tests/apps/echo_app.py replicas per version, and 100 rps open-loop load
through the gateway. The candidate is the same app with FAIL_RATE / SLOW_RATE
set; `shiploop rollout echo --wait --json` runs the rollout with the default
policy. Times come from the daemon's event rows; the blast radius from the load
generator's own results (x-shiploop-version = the candidate, and a 5xx or a
latency >= 100 ms).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.common import REPO, machine, percentile, print_header, table, write_results
from shiploop.analysis import FixedThresholdPolicy, IntervalStats
from shiploop.analysis.simulation import Incident, SimResult, World
from shiploop.analysis.simulation import simulate as simulate_many
from shiploop.gateway.render import HISTOGRAM_BUCKETS_MS, VERSION_HEADER
from shiploop.naming import RolloutState
from shiploop.rollout.core import Move, apply, judge
from shiploop.rollout.readings import Observation, Pair, Reading
from shiploop.rollout.record import RolloutRecord
from shiploop.spec import RolloutPolicy

NAME = "rollouts"
RPS = 100
HORIZON_S = 900  # 15 simulated minutes
BASE_ERROR = 0.001
LAT_MEDIAN_MS = 3.0
LAT_SIGMA = 0.6
SLOW_MS = 100.0
SEED = 20240601

# Flagger's defaults as its docs show them: interval 1m, threshold 5, stepWeight 10, maxWeight 50.
FLAGGER_STEP_WEIGHT = 10
FLAGGER_MAX_WEIGHT = 50


@dataclass(frozen=True)
class Scenario:
    key: str
    label: str
    candidate_error: float
    slow_share: float = 0.0  # share of the candidate's requests that get +SLOW_MS
    real_env: dict[str, str] = field(default_factory=dict)


SCENARIOS = [
    Scenario("a", "(a) broken: 100% 5xx", 1.0, real_env={"FAIL_RATE": "1.0"}),
    Scenario("b", "(b) 5% errors", 0.05, real_env={"FAIL_RATE": "0.05"}),
    Scenario("c", "(c) errors 0.1% -> 1%", 0.01, real_env={"FAIL_RATE": "0.01"}),
    Scenario(
        "d",
        "(d) +100 ms on 20%",
        BASE_ERROR,
        0.2,
        real_env={"FAIL_RATE": str(BASE_ERROR), "SLOW_RATE": "0.2", "SLOW_MS": str(int(SLOW_MS))},
    ),
]
AA = Scenario("aa", "A/A: 0.1% vs 0.1%", BASE_ERROR)


# -- the request stream ---------------------------------------------------------------------------

# Below this mean the binomial is drawn exactly by geometric skipping (cost ~ mean);
# above it the normal approximation is accurate to well under one count.
_EXACT_MEAN = 15.0


def binomial(rng: random.Random, n: int, p: float) -> int:
    """A Binomial(n, p) draw (Python 3.11 has no random.binomialvariate)."""
    if n <= 0 or p <= 0.0:
        return 0
    if p >= 1.0:
        return n
    if p > 0.5:
        return n - binomial(rng, n, 1.0 - p)
    mean = n * p
    if mean >= _EXACT_MEAN:
        draw = round(rng.gauss(mean, math.sqrt(mean * (1.0 - p))))
        return min(n, max(0, draw))
    # Trials up to and including each success are Geometric(p): skip over them.
    log_q = math.log1p(-p)
    successes = 0
    position = 0
    while True:
        position += int(math.log(1.0 - rng.random()) / log_q) + 1
        if position > n:
            return successes
        successes += 1


BOUNDS = tuple(float(b) for b in HISTOGRAM_BUCKETS_MS)


def _lognormal_cdf(x_ms: float) -> float:
    if x_ms <= 0.0:
        return 0.0
    return 0.5 * math.erfc(-(math.log(x_ms / LAT_MEDIAN_MS) / LAT_SIGMA) / math.sqrt(2.0))


def bucket_probabilities(shift_ms: float) -> tuple[float, ...]:
    """P(a request lands in each bucket), the last entry being above the largest bound.

    Envoy records upstream_rq_time in whole milliseconds (truncated), so a
    request is at or below bound b when its latency is below floor(b) + 1.
    """
    cum = [_lognormal_cdf(math.floor(b) + 1.0 - shift_ms) for b in BOUNDS]
    probs = [cum[0]] + [cum[i] - cum[i - 1] for i in range(1, len(cum))] + [1.0 - cum[-1]]
    return tuple(max(0.0, p) for p in probs)


FAST = bucket_probabilities(0.0)
SLOW = bucket_probabilities(SLOW_MS)


def multinomial(rng: random.Random, n: int, probs: Sequence[float], into: list[int]) -> None:
    """Add a Multinomial(n, probs) draw to `into`, by conditional binomials."""
    rest = 1.0
    for i, p in enumerate(probs):
        if n <= 0:
            return
        if p <= 0.0:
            continue
        k = n if p >= rest else binomial(rng, n, p / rest)
        into[i] += k
        n -= k
        rest -= p


@dataclass
class Arm:
    """Cumulative traffic of one version: what Envoy's counters and histogram hold."""

    requests: int = 0
    errors: int = 0
    bins: list[int] = field(default_factory=lambda: [0] * (len(BOUNDS) + 1))
    bad: int = 0  # failed or slowed requests users got

    def serve(self, rng: random.Random, n: int, error: float, slow_share: float) -> None:
        e = binomial(rng, n, error)
        self.requests += n
        self.errors += e
        if slow_share > 0.0:
            slow_err = binomial(rng, e, slow_share)
            slow_ok = binomial(rng, n - e, slow_share)
            multinomial(rng, slow_err + slow_ok, SLOW, self.bins)
            multinomial(rng, n - slow_err - slow_ok, FAST, self.bins)
            self.bad += e + slow_ok
        else:
            multinomial(rng, n, FAST, self.bins)
            self.bad += e

    def reading(self, ts: float) -> Reading:
        cumulative = []
        total = 0
        for bound, count in zip(BOUNDS, self.bins, strict=False):
            total += count
            cumulative.append((bound, total))
        return Reading(ts, self.requests, self.errors, tuple(cumulative))


class Stream:
    """The seeded per-second request stream; both policies get one with the same seed."""

    def __init__(self, seed: int, scenario: Scenario) -> None:
        self.rng = random.Random(seed)
        self.scenario = scenario
        self.candidate = Arm()
        self.baseline = Arm()

    def second(self, weight_pct: float) -> None:
        n_c = binomial(self.rng, RPS, weight_pct / 100.0)
        sc = self.scenario
        self.candidate.serve(self.rng, n_c, sc.candidate_error, sc.slow_share)
        self.baseline.serve(self.rng, RPS - n_c, BASE_ERROR, 0.0)


@dataclass(frozen=True)
class RunResult:
    outcome: str  # rolled_back | promoted | held | undecided
    t_s: int  # when the rollout ended, seconds after the candidate first got traffic
    blast: int  # failed or slowed candidate requests users got until then
    candidate_requests: int
    rule: str = ""


# -- our policy, as the controller applies it -------------------------------------------------------


def run_ours(seed: int, scenario: Scenario, policy: RolloutPolicy) -> RunResult:
    """The controller's own judge (shiploop.rollout.core.judge) once per simulated second.

    The bench keeps only what the controller does around it: it moves to the next
    step at once (its weights apply from the next second) and ends on a final move.
    """
    stream = Stream(seed, scenario)
    record = RolloutRecord(0, "bench", "candidate", "baseline", policy, RolloutState.PROGRESSING, 0.0, 0.0)
    record.begin_step(0, 0.0, Pair(stream.candidate.reading(0.0), stream.baseline.reading(0.0)))
    window: tuple[Reading, ...] = ()
    for t in range(1, HORIZON_S + 1):
        stream.second(record.weight)
        now = float(t)
        readings = Pair(stream.candidate.reading(now), stream.baseline.reading(now))
        verdict = judge(record, Observation(readings), now, window)
        apply(record, verdict)
        window = verdict.window
        c = stream.candidate
        if verdict.move is Move.ROLLBACK:
            return RunResult("rolled_back", t, c.bad, c.requests, verdict.rule)
        if verdict.move is Move.PROMOTE:
            return RunResult("promoted", t, c.bad, c.requests, verdict.rule)
        if verdict.move is Move.HELD:
            return RunResult("held", t, c.bad, c.requests, verdict.rule)
        if verdict.move is Move.ADVANCE:
            record.end_step(now, readings)
            record.begin_step(record.step + 1, now, readings)
            window = ()
    return RunResult("undecided", HORIZON_S, stream.candidate.bad, stream.candidate.requests)


# -- the Flagger-like policy -----------------------------------------------------------------------------


def histogram_quantile(q: float, bins: Sequence[int]) -> float | None:
    """Prometheus' histogram_quantile over one interval's bucket counts (linear within a bucket)."""
    total = sum(bins)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    lower = 0.0
    for bound, count in zip(BOUNDS, bins, strict=False):
        if count and seen + count >= rank:
            return lower + (bound - lower) * (rank - seen) / count
        seen += count
        lower = bound
    return BOUNDS[-1]  # in the overflow bucket: Prometheus answers the largest finite bound


def run_flagger(seed: int, scenario: Scenario, policy: FixedThresholdPolicy) -> RunResult:
    stream = Stream(seed, scenario)
    weight = FLAGGER_STEP_WEIGHT
    interval = int(policy.interval_s)
    history: list[IntervalStats] = []
    mark = (0, 0, list(stream.candidate.bins))
    for t in range(1, HORIZON_S + 1):
        stream.second(weight)
        if t % interval:
            continue
        c = stream.candidate
        bins = [now - before for now, before in zip(c.bins, mark[2], strict=True)]
        history.append(IntervalStats(c.requests - mark[0], c.errors - mark[1], histogram_quantile(0.99, bins)))
        mark = (c.requests, c.errors, list(c.bins))
        decision = policy.decide(history)
        if decision.action == "rollback":
            return RunResult("rolled_back", t, c.bad, c.requests, "failed_checks")
        if decision.action == "advance":
            if weight >= FLAGGER_MAX_WEIGHT:
                return RunResult("promoted", t, c.bad, c.requests, "pass")
            weight = min(FLAGGER_MAX_WEIGHT, weight + FLAGGER_STEP_WEIGHT)
    return RunResult("undecided", HORIZON_S, stream.candidate.bad, stream.candidate.requests)


# -- running and summing up ---------------------------------------------------------------------------------

Runner = Callable[[int, Scenario], RunResult]


def policies() -> dict[str, tuple[str, Runner]]:
    ours = RolloutPolicy()
    # Not a default: the earlier 20 s steps, for scenario (c) and A/A, to show what the
    # longer steps buy now that the 100% step no longer counts as evidence.
    short = RolloutPolicy(min_step=20.0)
    flagger = FixedThresholdPolicy()
    return {
        "ours": ("ours (default policy)", lambda seed, sc: run_ours(seed, sc, ours)),
        "flagger": ("Flagger-like", lambda seed, sc: run_flagger(seed, sc, flagger)),
        "ours_loose": ("ours, 20 s steps (old default)", lambda seed, sc: run_ours(seed, sc, short)),
    }


def seed_of(scenario: Scenario, i: int) -> int:
    return SEED + 1_000_003 * (ord(scenario.key[0]) + len(scenario.key)) + i


def simulate(scenario: Scenario, runner: Runner, runs: int) -> dict[str, Any]:
    t0 = time.process_time()
    results = [runner(seed_of(scenario, i), scenario) for i in range(runs)]
    return summarize(results, time.process_time() - t0)


def summarize(results: list[RunResult], cpu_s: float) -> dict[str, Any]:
    n = len(results)
    caught = [r for r in results if r.outcome == "rolled_back"]
    promoted = [r for r in results if r.outcome == "promoted"]
    # A run that is not rolled back counts as never caught: +inf in the time percentiles.
    ttr = [float(r.t_s) if r.outcome == "rolled_back" else math.inf for r in results]
    blast = [float(r.blast) for r in results]
    return {
        "runs": n,
        "rolled_back": len(caught),
        "rolled_back_share": len(caught) / n if n else math.nan,
        "promoted": len(promoted),
        "held": sum(1 for r in results if r.outcome == "held"),
        "undecided": sum(1 for r in results if r.outcome == "undecided"),
        "ttr_p50_s": percentile(ttr, 0.5),
        "ttr_p90_s": percentile(ttr, 0.9),
        "ttr_caught_p50_s": percentile([r.t_s for r in caught], 0.5),
        "ttr_caught_max_s": max((r.t_s for r in caught), default=math.nan),
        "promote_p50_s": percentile([r.t_s for r in promoted], 0.5),
        "blast_p50": percentile(blast, 0.5),
        "blast_p90": percentile(blast, 0.9),
        "blast_caught_p50": percentile([float(r.blast) for r in caught], 0.5),
        "candidate_requests_p50": percentile([float(r.candidate_requests) for r in results], 0.5),
        "rules": {rule: sum(1 for r in results if r.rule == rule) for rule in sorted({r.rule for r in results})},
        "cpu_s": cpu_s,
        # The raw runs, as counts: {outcome: {end time s: runs}} and {blast radius: runs}.
        "end_time_counts": {
            o: _counts(r.t_s for r in results if r.outcome == o) for o in sorted({r.outcome for r in results})
        },
        "blast_counts": _counts(r.blast for r in results),
    }


def _counts(values: Iterable[int]) -> dict[str, int]:
    return {str(k): v for k, v in sorted(Counter(values).items())}


def binomial_upper(x: int, n: int, confidence: float = 0.95) -> float:
    """One-sided Clopper-Pearson upper bound on a rate seen x times in n."""
    if x >= n:
        return 1.0

    def cdf(p: float) -> float:
        # In logs: the terms overflow a float for thousands of runs.
        head = math.lgamma(n + 1)
        logs = [
            head - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * math.log(p) + (n - k) * math.log1p(-p)
            for k in range(x + 1)
        ]
        top = max(logs)
        return math.exp(top) * sum(math.exp(v - top) for v in logs)

    lo, hi = x / n, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if cdf(mid) > 1.0 - confidence:
            lo = mid
        else:
            hi = mid
    return hi


def seconds(v: float) -> str | int | float:
    """A simulated time or count for a table: whole numbers; +inf is a run that was never rolled back."""
    if math.isinf(v):
        return "not caught"
    return v if math.isnan(v) else int(v)  # nan prints as "-"


# -- the real system -------------------------------------------------------------------------------------------

ECHO_APP = REPO / "tests" / "apps" / "echo_app.py"
SHIPLOOP = [sys.executable, "-m", "shiploop.cli"]


class RealProject:
    def __init__(self, root: Path) -> None:
        from shiploop.procs import free_port

        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        root.mkdir(parents=True)
        (root / "shiploop.yaml").write_text("name: rollouts-bench\n")
        svc = root / "echo"
        svc.mkdir()
        shutil.copy(ECHO_APP, svc / "app.py")
        self.set_env({"FAIL_RATE": str(BASE_ERROR)})

    def set_env(self, env: dict[str, str]) -> None:
        # Default rollout policy: no rollout section at all.
        (self.root / "echo" / "service.yaml").write_text(
            f"name: echo\nrun:\n  command: [python, app.py]\n  env: {json.dumps(env)}\nreplicas: 2\n"
            "routes:\n  - prefix: /echo/\n"
        )

    def cli(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [*SHIPLOOP, *args], cwd=self.root, capture_output=True, text=True, timeout=timeout,
            env=dict(os.environ, COLUMNS="200"),
        )  # fmt: skip
        if check and proc.returncode != 0:
            raise RuntimeError(f"shiploop {' '.join(args)} exited {proc.returncode}: {proc.stderr}{proc.stdout}")
        return proc

    def api(self) -> str:
        info = json.loads((self.root / ".shiploop" / "daemon.json").read_text())
        return f"http://127.0.0.1:{info['api_port']}"

    def tracks(self) -> dict[str, str]:
        status = json.loads(self.cli("status", "--json").stdout)
        svc = next(s for s in status["services"] if s["name"] == "echo")
        return {v["track"]: v["id"] for v in svc["versions"]}


class Observed:
    """Every load result with the wall-clock time it completed (on_result runs on the load thread)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rows: list[tuple[float, str, int, float]] = []  # (wall done, version header, status, latency s)

    def __call__(self, r: Any) -> None:
        row = (time.time(), r.headers.get(VERSION_HEADER, ""), r.status, r.latency_s)
        with self.lock:
            self.rows.append(row)

    def snapshot(self) -> list[tuple[float, str, int, float]]:
        with self.lock:
            return list(self.rows)


def real_rollout(p: RealProject, obs: Observed, scenario: Scenario, run: int) -> dict[str, Any]:
    # BENCH_RUN makes every candidate a new content-addressed version.
    p.set_env({**scenario.real_env, "BENCH_RUN": f"{scenario.key}-{run}"})
    started = time.time()
    r = p.cli("rollout", "echo", "--wait", "--json", check=False, timeout=600)
    cli_wall = time.time() - started
    if r.returncode not in (0, 3, 4):
        raise RuntimeError(f"rollout exited {r.returncode}: {r.stderr}{r.stdout}")
    outcome = json.loads(r.stdout)
    if outcome["state"] == "held":
        p.cli("rollout", "abort", "echo")
    events = httpx.get(f"{p.api()}/v1/events", params={"service": "echo", "limit": 500}, timeout=10).json()
    mine = [e for e in events if (e.get("evidence") or {}).get("rollout") == outcome["id"]]
    first_step = next(e["ts"] for e in mine if e["kind"] == "rollout-step")
    end = next(e for e in mine if e["kind"] in ("rollout-rolled-back", "rollout-promoted", "rollout-held"))
    label = f"echo@{outcome['candidate']}"
    # Let the last candidate responses land before counting.
    time.sleep(1.0)
    rows = [row for row in obs.snapshot() if row[1] == label]
    bad = [row for row in rows if row[2] >= 500 or row[3] >= SLOW_MS / 1000.0]
    last_rule = outcome.get("rule") or ((outcome.get("last") or {}).get("rule")) or ""
    result = {
        "scenario": scenario.key,
        "run": run,
        "candidate": outcome["candidate"],
        "outcome": outcome["state"],
        "reason": outcome["reason"],
        "rule": last_rule,
        "from_rollout_start_s": end["ts"] - outcome["started_at"],
        "from_first_traffic_s": end["ts"] - first_step,
        "cli_wall_s": cli_wall,  # includes deploying the candidate and --wait's 1 s polling
        "first_candidate_response_after_step0_s": (min(r[0] for r in rows) - first_step) if rows else None,
        "last_candidate_response_after_end_s": (max(r[0] for r in rows) - end["ts"]) if rows else None,
        "candidate_requests": len(rows),
        "candidate_5xx": sum(1 for row in rows if row[2] >= 500),
        "candidate_slow": sum(1 for row in rows if row[3] >= SLOW_MS / 1000.0),
        "blast": len(bad),
        "step_at_end": outcome["step"],
    }
    print(
        f"  {scenario.label} #{run}: {result['outcome']} ({last_rule}) after {result['from_first_traffic_s']:.1f} s "
        f"of candidate traffic; blast radius {result['blast']} of {result['candidate_requests']} candidate requests",
        flush=True,
    )
    if outcome["state"] != "promoted":
        deadline = time.monotonic() + 30
        while "retiring" in p.tracks() or "canary" in p.tracks():
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
    return result


def run_real(scenarios: list[Scenario], repeats: int, work: Path) -> dict[str, Any]:
    from shiploop.loadgen import background_load
    from shiploop.server.controlplane import teardown_without_daemon

    p = RealProject(work / "proj")
    obs = Observed()
    out: list[dict[str, Any]] = []
    load_report: dict[str, Any] = {}
    try:
        p.cli("up", "--detach", "--port", str(p.port))
        baseline = p.tracks()["stable"]
        print(f"  project up: echo@{baseline} stable (2 replicas), gateway {p.url}", flush=True)
        with background_load(f"{p.url}/echo/x", rps=RPS, capture_headers=(VERSION_HEADER,), on_result=obs) as load:
            load.wait_until(lambda r: r.total >= 2 * RPS, 20)
            # The scenario that may promote (c) goes last: a promotion changes the baseline.
            for sc in sorted(scenarios, key=lambda s: s.key == "c"):
                for i in range(1 if sc.key == "c" else repeats):
                    out.append(real_rollout(p, obs, sc, i))
            report = load.report()
        load_report = {
            "total": report.total,
            "achieved_rps": report.achieved_rps,
            "ok": report.ok,
            "failed": report.failed,
            "no_response": report.errors,
            "late_starts": report.late_starts,
            "status_counts": {str(k): v for k, v in sorted(report.status_counts.items())},
        }
    finally:
        try:
            p.cli("down", check=False, timeout=60)
        finally:
            teardown_without_daemon(p.root)
    return {"baseline": baseline, "runs": out, "load": load_report}


# -- the statistics tables (issue 7), vectorised -------------------------------------------------------------------

INCIDENT_WINDOW_S = 240.0  # incidents start anywhere in the default rollout's 240 s


def _stats_row(label: str, condition: str, r: SimResult) -> dict[str, Any]:
    n = len(r.outcome)
    back = int(np.sum(r.outcome == "rolled_back"))
    before = int(np.sum((r.outcome == "rolled_back") & (r.weight_at_end < 100)))
    promoted = r.outcome == "promoted"
    caught = r.outcome == "rolled_back"
    return {
        "label": label,
        "condition": condition,
        "runs": n,
        "rolled_back": back,
        "rolled_back_upper95": binomial_upper(back, n),
        "rolled_back_before_100": before,
        "promoted": int(promoted.sum()),
        "held": int(np.sum(r.outcome == "held")),
        "srm_held_runs": int(np.sum(r.srm_held_s > 0)),
        "promote_p50_s": float(np.median(r.t_s[promoted])) if promoted.any() else math.nan,
        "caught_p50_s": float(np.median(r.t_s[caught])) if caught.any() else math.nan,
    }


def stats_tables(runs: int) -> list[dict[str, Any]]:
    """The measurements docs/analysis.md and the README quote, each with its condition."""
    default, short = RolloutPolicy(), RolloutPolicy(min_step=20.0)
    steps = "steps 5/25/50/100, min_step 60 s"
    rows: list[dict[str, Any]] = []

    def run(label: str, condition: str, policy: RolloutPolicy, world: World, seed: int, horizon: int = 1800) -> None:
        t0 = time.process_time()
        r = simulate_many(policy, world, runs, seed, BOUNDS, horizon_s=horizon)
        rows.append(_stats_row(label, condition, r) | {"cpu_s": time.process_time() - t0})
        print(f"  {label:<44} {condition:<58} rolled back {rows[-1]['rolled_back']}/{runs}", flush=True)

    for name, base, inc in (
        ("A/A, shared incident 0.1% -> 2% errors", 0.001, Incident(0.0, 60.0, error=0.02)),
        ("A/A, shared incident 0.1% -> 5% errors", 0.001, Incident(0.0, 60.0, error=0.05)),
        ("A/A, shared incident 0.1% -> 20% errors", 0.001, Incident(0.0, 60.0, error=0.2)),
        ("A/A, shared incident 10% -> 30% errors", 0.1, Incident(0.0, 60.0, error=0.3)),
        ("A/A, shared incident latency x3", 0.001, Incident(0.0, 60.0, latency_factor=3.0)),
    ):
        world = World(rps=RPS, base_error=base, incident=inc, incident_window_s=INCIDENT_WINDOW_S)
        run(name, f"100 rps, 60 s incident starting in [0, 240) s, {steps}", default, world, seed_of(AA, len(rows)))
    for rps in (5, 100):
        for w in (5, 50):
            policy = RolloutPolicy(steps=[w, 100], min_step=300.0, max_step=600.0, min_samples=20)
            run(
                f"A/A, constant 10% errors, {rps} rps, {w}% weight",
                f"one {w}% step of 300 s (min_samples 20), judged every second",
                policy,
                World(rps=rps, base_error=0.1),
                seed_of(AA, 100 + rps + w),
                horizon=301,
            )
    run("A/A 0.1%: promotion time, SRM", f"100 rps, {steps}", default, World(rps=RPS), seed_of(AA, 200))
    low = RolloutPolicy(min_samples=20)
    run("A/A 0.1%: SRM at low traffic", f"5 rps, {steps}, min_samples 20", low, World(rps=5), seed_of(AA, 201))
    for base, cand in ((0.001, 0.01), (0.01, 0.02)):
        for policy, cond in ((default, steps), (short, "steps 5/25/50/100, min_step 20 s (old default)")):
            world = World(rps=RPS, base_error=base, candidate_error=cand)
            run(f"regression {base:.1%} -> {cand:.0%} errors", f"100 rps, {cond}", policy, world, seed_of(AA, 300))
    return rows


def print_stats(rows: list[dict[str, Any]]) -> None:
    print()
    print(
        table(
            ["scenario", "condition", "runs", "rolled back", "95% upper", "before 100%", "promoted", "SRM held",
             "p50 promote s", "p50 caught s"],
            [
                [r["label"], r["condition"], r["runs"], r["rolled_back"], f"{r['rolled_back_upper95']:.4f}",
                 r["rolled_back_before_100"], r["promoted"], r["srm_held_runs"], seconds(r["promote_p50_s"]),
                 seconds(r["caught_p50_s"])]
                for r in rows
            ],
        )
    )  # fmt: skip


# -- main ---------------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="30 runs per scenario, 100 A/A runs")
    parser.add_argument("--real", action="store_true", help="also run our policy on the real system")
    parser.add_argument("--runs", type=int, default=None, help="simulated runs per scenario (default 200)")
    parser.add_argument("--aa-runs", type=int, default=None, help="simulated A/A runs per policy (default 1000)")
    parser.add_argument("--real-repeats", type=int, default=None, help="real rollouts per scenario (default 2)")
    parser.add_argument("--stats-runs", type=int, default=None, help="runs per statistics scenario (default 4000)")
    parser.add_argument("--stats-only", action="store_true", help="only the statistics tables (issue 7)")
    parser.add_argument("--no-stats", action="store_true", help="skip the statistics tables")
    args = parser.parse_args()
    stats_runs = args.stats_runs or (500 if args.quick else 4000)
    if args.stats_only:
        rows = stats_tables(stats_runs)
        print_stats(rows)
        write_results(f"{NAME}_stats", {"benchmark": f"{NAME}_stats", "machine": machine(), "rows": rows})
        return
    runs = args.runs or (30 if args.quick else 200)
    aa_runs = args.aa_runs or (100 if args.quick else 1000)
    repeats = args.real_repeats or (1 if args.quick else 2)

    info = machine()
    print_header(
        "rollouts: time to rollback and blast radius, ours against a Flagger-like policy",
        "per scenario at 100 rps: time from the candidate's first traffic to rollback, and the candidate's "
        "failed (5xx) or slowed (+100 ms) requests users got; A/A false rollback rate",
        f"SIMULATION, {runs} runs per scenario and policy ({aa_runs} A/A), per-second binomial/multinomial "
        "request stream (latency lognormal 3 ms median, Envoy buckets), horizon 15 min; ours = the controller's "
        "judge (rollout.core.judge) with RolloutPolicy() every second; Flagger-like = FixedThresholdPolicy per 60 s, "
        "weight 10 -> 50 by 10"
        + ("; then REAL: daemon + Envoy + echo_app, 100 rps open-loop load, our default policy" if args.real else ""),
        info,
    )
    pols = policies()
    sim: dict[str, Any] = {}
    for sc in SCENARIOS:
        sim[sc.key] = {"label": sc.label, "policies": {}}
        for key in ("ours", "flagger", "ours_loose"):
            if key == "ours_loose" and sc.key != "c":
                continue
            res = simulate(sc, pols[key][1], runs)
            sim[sc.key]["policies"][key] = res
            print(
                f"  {sc.label:<24} {pols[key][0]:<44} rolled back {res['rolled_back']}/{runs}, "
                f"{res['cpu_s']:.1f} s CPU",
                flush=True,
            )
    aa: dict[str, Any] = {}
    for key in ("ours", "flagger", "ours_loose"):
        res = simulate(AA, pols[key][1], aa_runs)
        res["false_rollback_rate"] = res["rolled_back"] / aa_runs
        res["false_rollback_upper95"] = binomial_upper(res["rolled_back"], aa_runs)
        aa[key] = res
        print(f"  {AA.label:<24} {pols[key][0]:<44} rolled back {res['rolled_back']}/{aa_runs}, "
              f"{res['cpu_s']:.1f} s CPU", flush=True)  # fmt: skip

    print("\nSIMULATION (per-second model, not the real system)\n")
    rows = []
    for sc in SCENARIOS:
        for key, res in sim[sc.key]["policies"].items():
            rows.append(
                [
                    sc.label,
                    pols[key][0],
                    f"{res['rolled_back']}/{res['runs']}",
                    res["promoted"],
                    seconds(res["ttr_p50_s"]),
                    seconds(res["ttr_p90_s"]),
                    seconds(res["ttr_caught_p50_s"]),
                    seconds(res["blast_p50"]),
                    seconds(res["blast_p90"]),
                    seconds(res["promote_p50_s"]),
                ]
            )
    print(
        table(
            [
                "scenario",
                "policy",
                "rolled back in 15 min",
                "promoted (not caught)",
                "p50 time to rollback s",
                "p90 s",
                "p50 s, caught runs",
                "p50 blast radius",
                "p90 blast",
                "p50 time to promote s",
            ],
            rows,
        )
    )
    print()
    print(
        table(
            ["A/A policy", "runs", "false rollbacks", "rate", "95% upper bound", "promoted", "p50 time to promote s"],
            [
                [
                    pols[key][0],
                    res["runs"],
                    res["rolled_back"],
                    f"{res['false_rollback_rate']:.3f}",
                    f"{res['false_rollback_upper95']:.4f}",
                    res["promoted"],
                    seconds(res["promote_p50_s"]),
                ]
                for key, res in aa.items()
            ],
        )
    )
    print(
        "\nblast radius: failed or slowed candidate requests until the rollout ended (rollback, or promotion "
        "for runs not caught; after a promotion every request goes to the candidate)."
    )
    params = {
        "rps": RPS,
        "horizon_s": HORIZON_S,
        "runs": runs,
        "aa_runs": aa_runs,
        "baseline_error": BASE_ERROR,
        "latency": {"dist": "lognormal", "median_ms": LAT_MEDIAN_MS, "sigma": LAT_SIGMA, "recorded": "whole ms"},
        "slow_ms": SLOW_MS,
        "seed": SEED,
        "flagger": {"interval_s": 60, "threshold": 5, "step_weight": FLAGGER_STEP_WEIGHT,
                    "max_weight": FLAGGER_MAX_WEIGHT, "min_success_rate": 0.99, "max_p99_ms": 500},
        "ours": json.loads(RolloutPolicy().model_dump_json()),
    }  # fmt: skip
    write_results(
        NAME, {"benchmark": NAME, "mode": "simulation", "machine": info, "params": params, "scenarios": sim, "aa": aa}
    )

    if not args.no_stats:
        print(f"\nSTATISTICS (shiploop.analysis.simulation, {stats_runs} runs each)\n", flush=True)
        stats = stats_tables(stats_runs)
        print_stats(stats)
        write_results(f"{NAME}_stats", {"benchmark": f"{NAME}_stats", "machine": info, "rows": stats})

    if not args.real:
        return
    print(f"\nREAL: our default policy on the real system, {repeats} rollout(s) per scenario ((c) once)\n", flush=True)
    with tempfile.TemporaryDirectory(prefix="shiploop-bench-") as tmp:
        t0 = time.monotonic()
        real = run_real(SCENARIOS, repeats, Path(tmp))
        wall = time.monotonic() - t0
    rows = []
    for r in real["runs"]:
        s = sim[r["scenario"]]["policies"]["ours"]
        label = next(sc.label for sc in SCENARIOS if sc.key == r["scenario"])
        rows.append(
            [
                label,
                f"{r['outcome']} ({r['rule']}, step {r['step_at_end'] + 1})",
                r["from_first_traffic_s"],
                f"{seconds(s['ttr_p50_s'])} / {seconds(s['ttr_p90_s'])}",
                r["from_rollout_start_s"],
                r["blast"],
                f"{s['blast_p50']:.0f} / {s['blast_p90']:.0f}",
                r["candidate_requests"],
            ]
        )
    print()
    print(
        table(
            [
                "scenario",
                "real outcome",
                "real time to rollback s",
                "sim p50 / p90 s",
                "real from rollout start s",
                "real blast radius",
                "sim p50 / p90 blast",
                "real candidate requests",
            ],
            rows,
        )
    )
    print(
        "\nreal times: from the rollout-step event of step 0 (the candidate's weight set in Envoy) to the "
        "rollout-rolled-back (or -promoted) event, written once the traffic is back; 'from rollout start' uses the "
        "rollout row's started_at, stamped once the candidate's replicas are up (deploying them is not counted)."
    )
    write_results(
        f"{NAME}_real",
        {
            "benchmark": f"{NAME}_real",
            "mode": "real",
            "machine": info,
            "params": {"rps": RPS, "repeats": repeats, "policy": "RolloutPolicy() default", "wall_s": wall},
            **real,
        },
    )


if __name__ == "__main__":
    main()
