"""The rollout controller: a persisted state machine that moves traffic step by step.

States: pending -> progressing (step k) <-> paused -> promoted | rolled_back |
failed | aborted, and held (waiting for a person: resume, promote or abort).
Every transition is written to SQLite before anything else happens and is an
event holding its evidence, so a restarted daemon resumes from the row; a
rollout whose candidate it cannot account for is ended with all traffic on stable.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from shiploop.analysis import StepDecision, StepInputs, evaluate_step, srm_test
from shiploop.errors import ShiploopError
from shiploop.metrics.app_source import scrape_app_metrics
from shiploop.metrics.envoy_source import read_cluster_stats
from shiploop.naming import Track, cluster_name
from shiploop.rollout.judge import guardrail_results, limit_breaches
from shiploop.rollout.notify import call_webhooks, send_alerts
from shiploop.rollout.readings import CountersReset, Reading
from shiploop.server.controlplane import ControlPlane
from shiploop.server.specs import spec_from_json
from shiploop.spec import RolloutPolicy

STABLE, CANARY, SHADOW = Track.STABLE, Track.CANARY, Track.SHADOW
ACTIVE = ("pending", "progressing", "paused", "held")
LIMIT_WINDOW_S = 10.0


@dataclass
class ReadingUnavailable(Exception):
    """Envoy's counts for a version could not be read this time."""


@dataclass
class Rollout:
    id: int
    service: str
    candidate: str
    baseline: str
    state: str
    step: int
    data: dict[str, Any]
    started_at: float
    updated_at: float
    outcome_reason: str | None

    @functools.cached_property
    def policy(self) -> RolloutPolicy:
        return RolloutPolicy.model_validate_json(json.dumps(self.data["policy"]))

    def weight(self) -> int:
        policy = self.policy
        return policy.steps[self.step] if policy.strategy == "canary" else 0

    def as_dict(self) -> dict[str, Any]:
        policy = self.data["policy"]
        return {
            "id": self.id,
            "service": self.service,
            "candidate": self.candidate,
            "baseline": self.baseline,
            "state": self.state,
            "step": self.step,
            "steps": policy["steps"],
            "strategy": policy["strategy"],
            "weight": self.weight(),
            "started_at": self.started_at,
            "updated_at": self.updated_at,
            "reason": self.outcome_reason,
            "last": self.data.get("last"),
            "holding": self.data.get("holding"),
        }


class RolloutController:
    def __init__(self, cp: ControlPlane, clock: Callable[[], float] = time.time) -> None:
        self.cp = cp
        self.store = cp.store
        self.clock = clock
        self._windows: dict[int, collections.deque[Reading]] = {}
        self._last_eval: dict[int, float] = {}
        self._http = httpx.AsyncClient(timeout=2.0)

    async def close(self) -> None:
        await self._http.aclose()

    # -- persistence ---------------------------------------------------------------------

    def _row(self, row: Any) -> Rollout:
        return Rollout(
            row["id"],
            row["service"],
            row["candidate"],
            row["baseline"],
            row["state"],
            row["step"],
            json.loads(row["data"]),
            row["started_at"],
            row["updated_at"],
            row["outcome_reason"],
        )

    def get(self, rollout_id: int) -> Rollout:
        row = self.store.db.execute("SELECT * FROM rollouts WHERE id=?", (rollout_id,)).fetchone()
        return self._row(row)

    def latest(self, service: str) -> Rollout | None:
        row = self.store.db.execute(
            "SELECT * FROM rollouts WHERE service=? ORDER BY id DESC LIMIT 1", (service,)
        ).fetchone()
        return self._row(row) if row else None

    def active(self) -> list[Rollout]:
        marks = ",".join("?" * len(ACTIVE))
        rows = self.store.db.execute(f"SELECT * FROM rollouts WHERE state IN ({marks}) ORDER BY id", ACTIVE)
        return [self._row(r) for r in rows]

    def history(self, service: str, limit: int = 20) -> list[dict[str, Any]]:
        rows = self.store.db.execute(
            "SELECT * FROM rollouts WHERE service=? ORDER BY id DESC LIMIT ?", (service, limit)
        ).fetchall()
        return [self._row(r).as_dict() for r in rows]

    def _save(
        self, r: Rollout, event: str | None = None, message: str = "", evidence: dict[str, Any] | None = None
    ) -> None:
        r.updated_at = self.clock()
        with self.store.transaction():
            self.store.db.execute(
                "UPDATE rollouts SET state=?, step=?, data=?, updated_at=?, outcome_reason=? WHERE id=?",
                (r.state, r.step, json.dumps(r.data), r.updated_at, r.outcome_reason, r.id),
            )
            if event:
                self.store.event(
                    r.service, event, message, {"rollout": r.id, "state": r.state, "step": r.step, **(evidence or {})}
                )

    # -- starting ----------------------------------------------------------------------------

    async def start(self, service: str) -> dict[str, Any]:
        current = self.latest(service)
        if current is not None and current.state in ACTIVE:
            raise ShiploopError(
                f"{service} already has rollout #{current.id} ({current.state})",
                hint=f"follow it: shiploop rollout status {service}; or end it: shiploop rollout abort {service}",
            )
        spec = self.cp.service(service)
        track = SHADOW if spec.rollout.strategy == "mirror" else CANARY
        deployed = await self.cp.deploy(service, weight=0, track=track)
        candidate = deployed["version"]
        rows = {d.version: d for d in self.store.deployments(service)}
        baseline = next(d.version for d in rows.values() if d.track == STABLE)
        # The policy ships with the code: the candidate's own service.yaml decides how it is judged.
        policy = spec_from_json(rows[candidate].spec).rollout
        now = self.clock()
        cur = self.store.db.execute(
            "INSERT INTO rollouts(service, candidate, baseline, state, step, data, started_at, updated_at)"
            " VALUES (?, ?, ?, 'pending', 0, ?, ?, ?)",
            (service, candidate, baseline, json.dumps({"policy": json.loads(policy.model_dump_json())}), now, now),
        )
        r = self.get(int(cur.lastrowid or 0))
        self._save(
            r, "rollout-started", f"rollout #{r.id}: {service}@{candidate} against {baseline} ({policy.strategy})"
        )
        failure = await call_webhooks(policy.webhooks, "pre-rollout", self._payload(r))
        if failure:
            await self._end(r, "failed", failure, {})
            return r.as_dict()
        await self._enter_step(r, 0)
        return self.get(r.id).as_dict()

    def _payload(self, r: Rollout) -> dict[str, Any]:
        return {
            "service": r.service,
            "candidate": r.candidate,
            "baseline": r.baseline,
            "rollout": r.id,
            "step": r.step,
            "weight": r.weight(),
        }

    async def _enter_step(self, r: Rollout, k: int) -> None:
        policy = r.policy
        if k > 0:
            failure = await call_webhooks(policy.webhooks, "step", {**self._payload(r), "next_step": k})
            if failure:
                await self._end(r, "rolled_back", failure, {})
                return
        r.step = k
        if policy.strategy == "canary":
            weight = policy.steps[k]
            await self.cp.set_weights(r.service, {r.candidate: weight, r.baseline: 100 - weight})
        elif policy.strategy == "ab" and policy.match is not None:
            await self.cp.set_header_route(r.service, policy.match.header, policy.match.value, r.candidate)
        readings = await self._read_retrying(r)
        now = self.clock()
        r.data["step_started_at"] = now
        r.data["step_readings"] = {v: rd.to_json() for v, rd in readings[0].items()}
        if k == 0:
            r.data["start_readings"] = r.data["step_readings"]
        r.state = "progressing"
        r.data.pop("holding", None)
        self._save(
            r,
            "rollout-step",
            f"step {k + 1}/{len(policy.steps) if policy.strategy == 'canary' else 1}: {self._describe_split(r)}",
            {"weight": r.weight()},
        )

    def _describe_split(self, r: Rollout) -> str:
        policy = r.policy
        if policy.strategy == "canary":
            return f"{r.weight()}% to {r.candidate}"
        if policy.strategy == "ab" and policy.match:
            return f"requests with {policy.match.header}: {policy.match.value} to {r.candidate}"
        return f"a copy of all traffic to {r.candidate}; users see only {r.baseline}"

    # -- reading metrics ------------------------------------------------------------------------

    async def _read_retrying(self, r: Rollout, attempts: int = 10) -> tuple[dict[str, Reading], list[str]]:
        """A step's starting point must be a real reading: retry briefly, then give up loudly."""
        for _ in range(attempts - 1):
            try:
                return await self._read(r)
            except ReadingUnavailable:
                await asyncio.sleep(0.2)
        try:
            return await self._read(r)
        except ReadingUnavailable as e:
            raise ShiploopError(f"cannot read {r.service}'s metrics from envoy: {e}") from e

    async def _read(self, r: Rollout) -> tuple[dict[str, Reading], list[str]]:
        """Cumulative readings of candidate and baseline now, and the app metrics that could not be read.

        Raises ReadingUnavailable when Envoy's counts are missing: no counts is no
        evidence, never zero traffic.
        """
        now = self.clock()
        admin = self.cp.gateway.admin
        if admin is None:
            raise ReadingUnavailable("envoy admin is not attached")
        clusters = {v: cluster_name(r.service, v) for v in (r.candidate, r.baseline)}
        try:
            traffic = await read_cluster_stats(admin, list(clusters.values()))
        except httpx.HTTPError as e:
            raise ReadingUnavailable(f"envoy stats: {type(e).__name__}") from e
        missing = [c for c in clusters.values() if c not in traffic]
        if missing:
            raise ReadingUnavailable(f"envoy has no stats for {', '.join(missing)}")
        policy = r.policy
        wants_app = any(m.kind == "app_ratio" for m in [*policy.guardrails, *policy.limits])
        errors: list[str] = []
        out = {}
        for version, cluster in clusters.items():
            app: dict[str, float] = {}
            if wants_app:
                scrape = await scrape_app_metrics(self._http, self.cp.runtime.endpoints(r.service, version))
                errors.extend(f"{version}: {e}" for e in scrape.errors)
                app = scrape.counters
            t = traffic[cluster]
            out[version] = Reading(now, t.requests, t.errors_5xx, tuple(t.latency_buckets), app)
        return out, errors

    # -- the loop ------------------------------------------------------------------------------------

    async def tick(self) -> None:
        """Called by the daemon's supervisor; evaluates each progressing rollout about once a second."""
        for r in self.active():
            if r.state != "progressing":
                continue
            now = self.clock()
            if now - self._last_eval.get(r.id, 0.0) < 1.0:
                continue
            self._last_eval[r.id] = now
            await self.evaluate(r)

    async def evaluate(self, r: Rollout) -> None:
        policy = r.policy
        try:
            readings, errors = await self._read(r)
        except ReadingUnavailable as e:
            await self._no_reading(r, str(e))
            return
        start = {v: Reading.from_json(d) for v, d in r.data["start_readings"].items()}
        step_start = {v: Reading.from_json(d) for v, d in r.data["step_readings"].items()}
        try:
            since_start = {v: readings[v].minus(start[v]) for v in readings}
            since_step = {v: readings[v].minus(step_start[v]) for v in readings}
        except CountersReset as e:
            await self._end(r, "rolled_back", f"cannot account for the candidate: {e}", {})
            return
        cand, base = since_start[r.candidate], since_start[r.baseline]
        guardrails = guardrail_results(policy, cand, base)
        window = self._windows.setdefault(r.id, collections.deque())
        window.append(readings[r.candidate])
        while window and window[0].ts < readings[r.candidate].ts - LIMIT_WINDOW_S:
            window.popleft()
        try:
            recent = readings[r.candidate].minus(window[0])
        except CountersReset:
            recent = Reading(self.clock())
        breaches = limit_breaches(policy.limits, recent)
        srm = None
        weight = r.weight()
        if policy.strategy == "canary" and 0 < weight < 100:
            srm = srm_test(
                {r.candidate: since_step[r.candidate].requests, r.baseline: since_step[r.baseline].requests},
                {r.candidate: weight / 100, r.baseline: (100 - weight) / 100},
            )
        inputs = self._step_inputs(
            r,
            candidate_trials=since_step[r.candidate].requests,
            guardrails=guardrails,
            limit_breaches=breaches,
            srm=srm,
            data_ok=not errors,
        )
        decision = evaluate_step(inputs)
        evidence = {
            "action": decision.action,
            "rule": decision.rule,
            "reason": decision.reason,
            "elapsed_s": round(inputs.elapsed_s, 1),
            "weight": weight,
            "candidate": {"requests": cand.requests, "errors": cand.errors},
            "baseline": {"requests": base.requests, "errors": base.errors},
            "step_requests": {
                "candidate": since_step[r.candidate].requests,
                "baseline": since_step[r.baseline].requests,
            },
            "guardrails": [{"name": g.name, "detail": g.detail, **g.result.as_dict()} for g in guardrails],
            "limits": breaches,
            "srm": srm.as_dict() if srm else None,
            "source_errors": errors,
        }
        r.data["last"] = evidence
        await self._act(r, decision, evidence)

    async def _act(self, r: Rollout, decision: StepDecision, evidence: dict[str, Any]) -> None:
        """Carry out a step decision: roll back, advance or promote, hold, or keep watching."""
        policy = r.policy
        if decision.action == "rollback":
            await self._end(r, "rolled_back", decision.reason, evidence)
        elif decision.action == "advance":
            last_step = policy.strategy != "canary" or r.step + 1 >= len(policy.steps)
            if last_step:
                await self._end(r, "promoted", decision.reason, evidence)
            else:
                self._save(r, "rollout-advance", decision.reason, evidence)
                await self._enter_step(r, r.step + 1)
        elif decision.action == "hold" and decision.rule in ("srm", "data_error"):
            # Passing trouble: keep the traffic where it is and look again next second.
            if r.data.get("holding") != decision.rule:
                r.data["holding"] = decision.rule
                self._save(r, "rollout-holding", decision.reason, evidence)
            else:
                self._save(r)
        elif decision.action == "hold":
            r.state = "held"
            r.outcome_reason = decision.reason
            self._save(r, "rollout-held", decision.reason, evidence)
            await self._alert(r, "held", decision.reason)
        else:
            r.data.pop("holding", None)
            self._save(r)

    def _step_inputs(self, r: Rollout, **measured: Any) -> StepInputs:
        """The policy's rules and the step's clock, with what was measured this second."""
        policy = r.policy
        return StepInputs(
            elapsed_s=self.clock() - r.data["step_started_at"],
            min_step_s=policy.min_step,
            max_step_s=policy.max_step,
            min_samples=policy.min_samples,
            on_inconclusive=policy.on_inconclusive,
            on_no_data=policy.on_no_data,
            require_noninferiority=policy.require_noninferiority,
            **measured,
        )

    async def _no_reading(self, r: Rollout, error: str) -> None:
        """Envoy could not be read: wait for good data, or past max_step do what on_no_data says."""
        decision = evaluate_step(self._step_inputs(r, candidate_trials=0, data_ok=False))
        evidence = {
            "action": decision.action,
            "rule": decision.rule,
            "reason": decision.reason,
            "source_errors": [error],
        }
        if decision.action == "wait":
            # Visible in `rollout status` (holding) and once in the events, until good data returns.
            first = r.data.get("holding") != "data_error"
            r.data["holding"] = "data_error"
            self._save(r, "rollout-holding" if first else None, f"metrics unavailable: {error}", evidence)
            return
        await self._act(r, decision, evidence)

    # -- ending ---------------------------------------------------------------------------------------

    async def _end(self, r: Rollout, outcome: str, reason: str, evidence: dict[str, Any]) -> None:
        policy = r.policy
        # Persist the decision first: a crash between here and the traffic move is
        # finished by resume(), which sees a terminal state and a live candidate.
        r.state = {"promoted": "promoting", "rolled_back": "rolling_back"}.get(outcome, "rolling_back")
        r.outcome_reason = reason
        self._save(r)
        await self._apply_outcome(r, outcome)
        r.state = outcome
        self._save(r, f"rollout-{outcome.replace('_', '-')}", reason, evidence)
        self._windows.pop(r.id, None)
        await call_webhooks(policy.webhooks, "post-rollout", {**self._payload(r), "outcome": outcome})
        await self._alert(r, "promoted" if outcome == "promoted" else "rollback", reason)

    async def _apply_outcome(self, r: Rollout, outcome: str) -> None:
        policy = r.policy
        if policy.strategy == "ab" and policy.match is not None:
            try:
                await self.cp.remove_header_route(r.service, policy.match.header, policy.match.value)
            except ShiploopError:
                pass  # already gone
        deployed = {d.version: d for d in self.store.deployments(r.service)}
        if r.candidate not in deployed or deployed[r.candidate].track not in (CANARY, SHADOW):
            return
        if outcome == "promoted":
            await self.cp.promote(r.service, reason=f"rollout #{r.id}")
        else:
            await self.cp.rollback(r.service, reason=f"rollout #{r.id}: {r.outcome_reason}")

    async def _alert(self, r: Rollout, event: str, reason: str) -> None:
        text = f"shiploop: {r.service}@{r.candidate} {event.replace('rollback', 'rolled back')}: {reason}"
        failures = await send_alerts(r.policy.alerts, event, text, self._payload(r))
        for f in failures:
            self.store.event(r.service, "alert-failed", f, {"rollout": r.id})

    # -- commands -------------------------------------------------------------------------------------

    def _current(self, service: str) -> Rollout:
        r = self.latest(service)
        if r is None or r.state not in ACTIVE:
            raise ShiploopError(f"{service} has no rollout in progress", hint=f"start one: shiploop rollout {service}")
        return r

    async def pause(self, service: str) -> dict[str, Any]:
        r = self._current(service)
        r.state = "paused"
        self._save(r, "rollout-paused", "paused by hand")
        return r.as_dict()

    async def resume(self, service: str) -> dict[str, Any]:
        r = self._current(service)
        if r.state in ("paused", "held"):
            # The step's clock starts again; its evidence (since the rollout began) is kept.
            r.state = "progressing"
            r.data["step_started_at"] = self.clock()
            r.outcome_reason = None
            self._save(r, "rollout-resumed", "resumed by hand")
        return r.as_dict()

    async def abort(self, service: str) -> dict[str, Any]:
        r = self._current(service)
        await self._end(r, "aborted", "aborted by hand", r.data.get("last") or {})
        return self.get(r.id).as_dict()

    async def promote_now(self, service: str) -> dict[str, Any]:
        r = self._current(service)
        await self._end(r, "promoted", "promoted by hand", r.data.get("last") or {})
        return self.get(r.id).as_dict()

    async def resume_after_restart(self) -> None:
        """A new daemon: finish what a dead one left half done; never keep an unaccounted candidate."""
        for r in self.active() + self._unfinished():
            deployed = {d.version: d for d in self.store.deployments(r.service)}
            if r.state in ("promoting", "rolling_back"):
                await self._apply_outcome(r, "promoted" if r.state == "promoting" else "rolled_back")
                r.state = "promoted" if r.state == "promoting" else "rolled_back"
                self._save(r, f"rollout-{r.state.replace('_', '-')}", f"finished after a restart: {r.outcome_reason}")
            elif r.candidate not in deployed or "start_readings" not in r.data:
                await self._end(r, "failed", "the daemon restarted and cannot account for the candidate", {})
            else:
                self._save(r, "rollout-resumed", "resumed after a daemon restart")

    def _unfinished(self) -> list[Rollout]:
        rows = self.store.db.execute("SELECT * FROM rollouts WHERE state IN ('promoting', 'rolling_back')")
        return [self._row(x) for x in rows]
