"""The experiment controller: start (candidate beside stable, units split in Envoy), fold the
log every tick, decide, and ship (promote) or stop (roll back) on its own.

States: running -> shipped | stopped | inconclusive | discarded, or held (a sample-ratio
mismatch: routing stays, a person decides with `experiment stop --ship|--discard`).
A promote or rollback by hand ends the split at once (routing needs control stable and
treatment the canary); the next tick records the experiment as ended by hand.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import httpx

from shiploop.analysis.experiment import ExperimentDecision, Verdict
from shiploop.errors import Conflict, Invalid, NotFound, ShiploopError
from shiploop.experiments import log_tail
from shiploop.experiments.evaluate import BUCKETS_MS, evaluate, spec_of
from shiploop.gateway.assignment import CONTROL, TREATMENT
from shiploop.naming import ACTIVE_ROLLOUT_STATES, Track
from shiploop.rollout.ports import ReadingSource
from shiploop.rollout.readings import CountersReset, Pair, ReadingUnavailable
from shiploop.server.controlplane import ControlPlane
from shiploop.server.specs import spec_from_json
from shiploop.spec import Guardrail, RolloutPolicy
from shiploop.store import ExperimentRow, Exposure

LOG_POSITION_KEY = "experiments/log-position"
# The app counters of both variants are read this often; each reading closes one batch of the
# request-level ratio (analysis.experiment.request_ratio_lift). The sampler reads once a second too.
APP_READ_EVERY_S = 1.0


def app_reading_key(experiment: int) -> str:
    return f"experiments/{experiment}/app-reading"


def point_every_s(elapsed_s: float) -> float:
    """How often a point of the lift's history (the report's chart) is kept: every second in the first
    minute, then sparser, so a 14-day experiment keeps some thousands of points, not a million."""
    return min(60.0, max(1.0, elapsed_s / 60.0))


class ExperimentController:
    def __init__(
        self, cp: ControlPlane, clock: Callable[[], float] = time.time, readings: ReadingSource | None = None
    ) -> None:
        self.cp = cp
        self.store = cp.store
        self.clock = clock
        # The rollouts' source of per-version counters (Envoy's and the apps' /metrics, or Prometheus):
        # app-counter secondary metrics are read through it. None: they are not measured.
        self.readings = readings
        self._last_point: dict[int, float] = {}
        self._last_app_read: dict[int, float] = {}
        self.skipped_lines = 0
        # Starts, stops by hand and the tick's own decisions are taken one at a time: the tick reads
        # the running experiments, then awaits; a stop that ended one meanwhile was overwritten as
        # "ended by hand" by the stale row (seen once in the suite: discarded -> ended). Two starts
        # at once both found no experiment running, deployed the same candidate and ran two.
        self._deciding = asyncio.Lock()

    # -- commands ------------------------------------------------------------------------------

    async def start(self, service: str) -> dict[str, Any]:
        async with self._deciding:
            return await self._start(service)

    async def _start(self, service: str) -> dict[str, Any]:
        spec = self.cp.service(service)
        if self.store.running_experiment(service) is not None:
            raise Conflict(
                f"{service} has an experiment running already",
                hint=f"see: shiploop experiment status {service}",
            )
        active = [r for r in self.store.rollouts(service, limit=1) if r.state in ACTIVE_ROLLOUT_STATES]
        if active:
            raise Conflict(
                f"{service} is being rolled out (rollout #{active[0].id})", hint=f"shiploop rollout abort {service}"
            )
        if self.cp.ctx.find_track(service, Track.CANARY) is not None:
            raise Conflict(
                f"{service} has a canary already: an experiment compares a new candidate with stable",
                hint=f"shiploop rollback {service}",
            )
        if spec.experiment is None:
            raise Invalid(
                f"{service}/service.yaml has no experiment block",
                hint="add experiment: with hypothesis, unit, metrics and minimum_detectable_effect "
                "(docs/config-reference.md), then: shiploop experiment start " + service,
            )
        deployed = await self.cp.deploy(service, weight=0, track=Track.CANARY)
        candidate = deployed["version"]
        ctx = self.cp.ctx
        try:
            async with ctx.lock:
                rows = {d.version: d for d in ctx.store.deployments(service)}
                stable = ctx.track(service, Track.STABLE)
                exp = spec_from_json(rows[candidate].spec).experiment  # the candidate's own file decides
                if exp is None:
                    raise Invalid(f"{service}@{candidate} has no experiment block", hint="add one to service.yaml")
                row = ExperimentRow(
                    0,
                    service,
                    secrets.token_hex(6),
                    exp.hypothesis,
                    exp.model_dump(mode="json"),
                    stable.version,
                    candidate,
                    "running",
                    self.clock(),
                    None,
                    None,
                    None,
                    None,
                )
                change = ctx.change()
                ids: list[int] = []
                change.start_experiment(row, ids)
                gen = await ctx.commit(change)
        except BaseException:
            await self.cp.rollback(service, reason="the experiment could not start")
            raise
        started = self.store.experiment(ids[0])
        if started is not None:
            await self._read_app_counters(started)  # the base of the first batch: no request before it counts
        self.cp.event(
            service,
            "experiment-started",
            f"experiment #{ids[0]}: {exp.hypothesis} ({service}@{candidate} for {exp.allocation:g}% of units)",
            {"experiment": ids[0], "control": stable.version, "treatment": candidate, "generation": gen},
        )
        return self.status(service)

    def _latest(self, service: str) -> ExperimentRow:
        self.cp.ctx.require_service(service)
        rows = self.store.experiments(service, limit=1)
        if not rows:
            raise NotFound(
                f"{service} has had no experiment yet", hint=f"start one: shiploop experiment start {service}"
            )
        return rows[0]

    def status(self, service: str) -> dict[str, Any]:
        row = self._latest(service)
        if not row.running and row.result:
            # The evidence the decision was taken on (lines logged while the ship or stop was
            # being published are folded too, but do not change the result).
            return {**row.result, "state": row.state, "ended_at": row.ended_at}
        status, _ = evaluate(self.store, row, self.clock())
        return status

    def history(self, service: str, limit: int = 20) -> list[dict[str, Any]]:
        self.cp.ctx.require_service(service)
        return [
            {
                "id": r.id,
                "hypothesis": r.hypothesis,
                "state": r.state,
                "control": r.control,
                "treatment": r.treatment,
                "started_at": r.started_at,
                "ended_at": r.ended_at,
                "decision": r.decision,
                "reason": r.reason,
            }
            for r in self.store.experiments(service, limit)
        ]

    def report(self, service: str) -> dict[str, Any]:
        """The status with the history of the lift and units (the report's charts)."""
        status = self.status(service)
        status["points"] = [{"t": ts, **data} for ts, data in self.store.experiment_points(status["id"])]
        return status

    async def stop(self, service: str, ship: bool) -> dict[str, Any]:
        async with self._deciding:
            row = self.store.running_experiment(service)
            if row is None:
                raise NotFound(
                    f"{service} has no experiment running", hint=f"see: shiploop experiment history {service}"
                )
            self._fold()
            status, _ = evaluate(self.store, row, self.clock())
            verdict = Verdict(
                ExperimentDecision.SHIP if ship else ExperimentDecision.STOP,
                "Shipped by hand." if ship else "Discarded by hand.",
            )
            await self._end(row, "shipped" if ship else "discarded", verdict, status)
        return self.status(service)

    # -- every tick --------------------------------------------------------------------------------

    async def tick(self) -> None:
        if self._deciding.locked():
            return  # a stop by hand is being carried out: never hold the supervisor's tick up for it
        async with self._deciding:
            self._fold()
            for row in self.store.running_experiments():
                await self._read_app_counters(row)
                await self._judge(row)

    def _fold(self) -> None:
        """Read Envoy's new log lines into the store, with the position, in one transaction."""
        position = log_tail.Position.loads(self.store.get(LOG_POSITION_KEY))
        exposures, after, skipped = log_tail.read_from(self.cp.ctx.experiment_log, position)
        if after == position:
            return
        self.skipped_lines += skipped
        by_salt: dict[str, list[Exposure]] = defaultdict(list)
        for e in exposures:
            by_salt[e.salt].append(e)
        ids = {r.salt: r.id for r in self.store.experiments(limit=1000)}
        with self.store.transaction():
            for salt, batch in by_salt.items():
                if salt in ids:
                    self.store.record_exposures(ids[salt], batch, list(BUCKETS_MS))
            self.store.put(LOG_POSITION_KEY, after.dumps())

    async def _read_app_counters(self, row: ExperimentRow) -> None:
        """One batch of every app-ratio secondary metric: the counters' increase per variant since the last reading.

        The last reading is stored with the sums it fed (one transaction), so a restarted daemon goes
        on from it: replicas and Envoy outlive the daemon, and so do their counters. A failed reading
        adds nothing (the next one covers the gap); a counter reset drops one batch and starts over.
        """
        apps = [m for m in spec_of(row).metrics.secondary if m.kind == "app_ratio"]
        now = self.clock()
        if not apps or self.readings is None or now - self._last_app_read.get(row.id, 0.0) < APP_READ_EVERY_S:
            return
        self._last_app_read[row.id] = now
        policy = RolloutPolicy(guardrails=[Guardrail(metric=f"app:{m.app}", tolerance=0.0) for m in apps], limits=[])
        try:
            observed = await self.readings.read(row.service, row.treatment, row.control, policy)
        except (ReadingUnavailable, httpx.HTTPError, ValueError, KeyError):
            return  # as the sampler: no reading this time, the next one covers the gap
        if observed.source_errors:
            return  # a sum over the replicas that answered would read as a reset
        key = app_reading_key(row.id)
        before = self.store.get(key)
        delta: Pair | None = None
        if before is not None:
            try:
                delta = observed.readings.minus(Pair.from_json(json.loads(before)))
            except CountersReset:
                delta = None
        with self.store.transaction():
            if delta is not None:
                for m in apps:
                    assert m.numerator is not None and m.denominator is not None
                    self.store.add_app_batches(
                        row.id,
                        m.label,
                        {
                            arm: (r.app.get(m.numerator, 0.0), r.app.get(m.denominator, 0.0))
                            for arm, r in ((CONTROL, delta.baseline), (TREATMENT, delta.candidate))
                        },
                    )
            self.store.put(key, json.dumps(observed.readings.to_json()))

    async def _judge(self, row: ExperimentRow) -> None:
        now = self.clock()
        tracks = {d.version: d.track for d in self.store.deployments(row.service)}
        if tracks.get(row.control) != Track.STABLE or tracks.get(row.treatment) != Track.CANARY:
            # Promoted or rolled back by hand: the split ended with that publish.
            status, _ = evaluate(self.store, row, now)
            self.store.update_experiment(
                row.id,
                "ended",
                decision="ended",
                reason="Ended by hand (promote or rollback).",
                result=status,
                ended_at=now,
            )
            self.store.delete(app_reading_key(row.id))
            self.cp.event(row.service, "experiment-ended", f"experiment #{row.id} ended by a promote or rollback")
            return
        status, verdict = evaluate(self.store, row, now)
        if now - self._last_point.get(row.id, 0.0) >= point_every_s(now - row.started_at):
            self._last_point[row.id] = now
            self._add_point(row, now, status)
        decision = verdict.decision
        if decision == ExperimentDecision.CONTINUE:
            return
        if decision == ExperimentDecision.HOLD:
            if row.state != "held":
                self.store.update_experiment(row.id, "held", decision=str(decision), reason=verdict.reason)
                self.cp.event(row.service, "experiment-held", verdict.reason, {"experiment": row.id})
            return
        state = {
            ExperimentDecision.SHIP: "shipped",
            ExperimentDecision.STOP: "stopped",
            ExperimentDecision.INCONCLUSIVE: "inconclusive",
        }[decision]
        await self._end(row, state, verdict, status)

    def _add_point(self, row: ExperimentRow, now: float, status: dict[str, Any]) -> None:
        self.store.add_experiment_point(
            row.id,
            now,
            {
                "units": {v["arm"]: v["units"] for v in status["variants"]},
                "values": {v["arm"]: v["value"] for v in status["variants"]},
                "lift": status["lift"]["absolute"],
                "interval": status["lift"]["interval"],
            },
        )

    async def _end(self, row: ExperimentRow, state: str, verdict: Verdict, status: dict[str, Any]) -> None:
        now = self.clock()
        self._add_point(row, now, status)  # the chart ends where the decision was taken
        status = {**status, "decision": str(verdict.decision), "reason": verdict.reason}
        try:
            if state == "shipped":
                await self.cp.promote(row.service, reason=f"experiment #{row.id}: {verdict.reason}")
            else:
                await self.cp.rollback(row.service, reason=f"experiment #{row.id}: {verdict.reason}")
        except ShiploopError as e:
            self.cp.event(row.service, "error", f"ending experiment #{row.id}: {e.line()}")
            raise
        self.store.update_experiment(
            row.id, state, decision=str(verdict.decision), reason=verdict.reason, result=status, ended_at=now
        )
        self.store.delete(app_reading_key(row.id))
        self.cp.event(
            row.service,
            f"experiment-{state}",
            f"experiment #{row.id} {state}: {verdict.reason}",
            {"experiment": row.id, "lift": status["lift"], "variants": status["variants"]},
        )
