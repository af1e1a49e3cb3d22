"""The rollout controller: a thin loop that reads, asks the pure core, and acts.

States: pending -> progressing (step k) <-> paused -> promoted | rolled_back |
failed | aborted, and held (waiting for a person: resume, promote or abort).
Every transition is written to SQLite before anything else happens and is an
event holding its evidence, so a restarted daemon resumes from the record; a
rollout whose candidate it cannot account for is ended with all traffic on stable.

Everything it touches is passed in: the store, the deployments (the control
plane), the readings source, the notifier, the clock and sleep.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from shiploop.errors import Conflict, NotFound, ShiploopError, Unavailable
from shiploop.naming import ACTIVE_ROLLOUT_STATES, RolloutState, Track
from shiploop.rollout.core import Move, Verdict, apply, judge
from shiploop.rollout.notify import HttpNotifier
from shiploop.rollout.ports import Deployments, Notifier, ReadingSource, RolloutStore
from shiploop.rollout.readings import Observation, Reading, ReadingUnavailable
from shiploop.rollout.record import RolloutRecord
from shiploop.rollout.view import rollout_view

EVAL_INTERVAL_S = 1.0
# The state a rollout passes through while its traffic moves, and the event it ends with.
_TRANSIENT = {RolloutState.PROMOTED: RolloutState.PROMOTING}
_ENDED_EVENT = {
    RolloutState.PROMOTED: "rollout-promoted",
    RolloutState.ROLLED_BACK: "rollout-rolled-back",
    RolloutState.FAILED: "rollout-failed",
    RolloutState.ABORTED: "rollout-aborted",
}


class RolloutController:
    def __init__(
        self,
        store: RolloutStore,
        deployments: Deployments,
        readings: ReadingSource,
        notifier: Notifier | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.store = store
        self.deployments = deployments
        self.readings = readings
        self.notifier: Notifier = notifier or HttpNotifier()
        self.clock = clock
        self.sleep = sleep
        self._windows: dict[int, tuple[Reading, ...]] = {}  # the limit window of each rollout, in memory
        self._last_eval: dict[int, float] = {}
        # One per service: a judgement (read, judge, act) and a person's command (start, pause,
        # resume, abort, promote) never interleave. A tick holding a record read before a pause
        # awaited Envoy's stats, then saved it back as progressing and moved the weights on.
        self._locks: dict[str, asyncio.Lock] = {}

    def _lock(self, service: str) -> asyncio.Lock:
        return self._locks.setdefault(service, asyncio.Lock())

    # -- records ------------------------------------------------------------------------------------

    def get(self, rollout_id: int) -> RolloutRecord:
        row = self.store.rollout(rollout_id)
        if row is None:
            raise NotFound(f"no rollout #{rollout_id}")
        return RolloutRecord.from_row(row)

    def latest(self, service: str) -> RolloutRecord | None:
        rows = self.store.rollouts(service, limit=1)
        return RolloutRecord.from_row(rows[0]) if rows else None

    def active(self) -> list[RolloutRecord]:
        return [RolloutRecord.from_row(r) for r in self.store.rollouts_in(ACTIVE_ROLLOUT_STATES)]

    def view(self, r: RolloutRecord) -> dict[str, Any]:
        """What `rollout status` shows (and `--json` prints): the record with its progress explained."""
        return rollout_view(r, self.clock(), self.deployments.sample_url(r.service))

    def latest_view(self, service: str) -> dict[str, Any] | None:
        r = self.latest(service)
        return self.view(r) if r is not None else None

    def history(self, service: str, limit: int = 20) -> list[dict[str, Any]]:
        return [self.view(RolloutRecord.from_row(row)) for row in self.store.rollouts(service, limit)]

    def _save(
        self, r: RolloutRecord, event: str | None = None, message: str = "", evidence: dict[str, Any] | None = None
    ) -> None:
        r.updated_at = self.clock()
        with self.store.transaction():
            self.store.update_rollout(r.id, r.state, r.step, r.data_json(), r.updated_at, r.reason)
            if event:
                self.store.event(
                    r.service,
                    event,
                    message,
                    {"rollout": r.id, "state": str(r.state), "step": r.step, **(evidence or {})},
                    ts=r.updated_at,
                )

    def _event(self, r: RolloutRecord, kind: str, message: str) -> None:
        self.store.event(r.service, kind, message, {"rollout": r.id}, ts=self.clock())

    # -- starting ----------------------------------------------------------------------------------------

    async def start(self, service: str) -> dict[str, Any]:
        async with self._lock(service):
            return await self._start(service)

    async def _start(self, service: str) -> dict[str, Any]:
        current = self.latest(service)
        if current is not None and current.active:
            raise Conflict(
                f"{service} already has rollout #{current.id} ({current.state})",
                hint=f"follow it: shiploop rollout status {service}; or end it: shiploop rollout abort {service}",
            )
        spec = self.deployments.service(service)
        track = Track.SHADOW if spec.rollout.strategy == "mirror" else Track.CANARY
        deployed = await self.deployments.deploy(service, 0, track)
        candidate = deployed["version"]
        baseline = next(d.version for d in self.deployments.deployments(service) if d.track == Track.STABLE)
        # The policy ships with the code: the candidate's own service.yaml decides how it is judged.
        policy = self.deployments.deployed_policy(service, candidate)
        now = self.clock()
        r = RolloutRecord(0, service, candidate, baseline, policy, RolloutState.PENDING, now, now)
        r.id = self.store.insert_rollout(service, candidate, baseline, r.state, r.data_json(), now)
        self._save(
            r, "rollout-started", f"rollout #{r.id}: {service}@{candidate} against {baseline} ({policy.strategy})"
        )
        failure = await self.notifier.webhooks(policy.webhooks, "pre-rollout", self._payload(r))
        if failure:
            await self._end(r, RolloutState.FAILED, failure, "webhook", {})
            return self.view(r)
        await self._enter_step(r, 0)
        return self.view(self.get(r.id))

    def _payload(self, r: RolloutRecord) -> dict[str, Any]:
        return {
            "service": r.service,
            "candidate": r.candidate,
            "baseline": r.baseline,
            "rollout": r.id,
            "step": r.step,
            "weight": r.weight,
        }

    async def _enter_step(self, r: RolloutRecord, k: int) -> None:
        policy = r.policy
        if k > 0:
            failure = await self.notifier.webhooks(policy.webhooks, "step", {**self._payload(r), "next_step": k})
            if failure:
                await self._end(r, RolloutState.ROLLED_BACK, failure, "webhook", {})
                return
        weight = r.weight_of(k)
        if policy.strategy == "canary":
            await self.deployments.set_weights(r.service, {r.candidate: weight, r.baseline: 100 - weight})
        elif policy.strategy == "ab" and policy.match is not None:
            await self.deployments.set_header_route(r.service, policy.match.header, policy.match.value, r.candidate)
        # The step counts from a reading taken after its weights hold (a scraped source may wait for one).
        start = await self._read_retrying(r, fresh_after=self.clock())
        now = self.clock()
        r.begin_step(k, now, start.readings)
        self._windows.pop(r.id, None)
        r.state = RolloutState.PROGRESSING
        r.holding = None
        self._save(r, "rollout-step", f"step {k + 1}/{r.step_count}: {self._describe_split(r)}", {"weight": weight})

    def _describe_split(self, r: RolloutRecord) -> str:
        policy = r.policy
        if policy.strategy == "canary":
            return f"{r.weight}% to {r.candidate}"
        if policy.strategy == "ab" and policy.match:
            return f"requests with {policy.match.header}: {policy.match.value} to {r.candidate}"
        return f"a copy of all traffic to {r.candidate}; users see only {r.baseline}"

    async def _read(self, r: RolloutRecord, fresh_after: float | None = None) -> Observation:
        return await self.readings.read(r.service, r.candidate, r.baseline, r.policy, fresh_after=fresh_after)

    async def _read_retrying(self, r: RolloutRecord, fresh_after: float, attempts: int = 10) -> Observation:
        """A step's starting point must be a real reading: retry briefly, then give up loudly."""
        for _ in range(attempts - 1):
            try:
                return await self._read(r, fresh_after)
            except ReadingUnavailable:
                await self.sleep(0.2)
        try:
            return await self._read(r, fresh_after)
        except ReadingUnavailable as e:
            raise Unavailable(f"cannot read {r.service}'s metrics: {e}") from e

    # -- the loop ------------------------------------------------------------------------------------------

    async def tick(self) -> None:
        """Called by the daemon's supervisor; judges each progressing rollout about once a second."""
        for listed in self.active():
            if listed.state != RolloutState.PROGRESSING:
                continue
            now = self.clock()
            if now - self._last_eval.get(listed.id, float("-inf")) < EVAL_INTERVAL_S:
                continue
            lock = self._lock(listed.service)
            if lock.locked():
                continue  # a command for this service is being carried out: judge it next second
            async with lock:
                r = self.get(listed.id)  # as a command that just ended left it
                if r.state != RolloutState.PROGRESSING:
                    continue
                self._last_eval[r.id] = now
                await self.evaluate(r)

    async def evaluate(self, r: RolloutRecord) -> Verdict:
        observed: Observation | ReadingUnavailable
        try:
            observed = await self._read(r)
        except ReadingUnavailable as e:
            observed = e
        verdict = judge(r, observed, self.clock(), self._windows.get(r.id, ()))
        self._windows[r.id] = verdict.window
        apply(r, verdict)
        if verdict.rebased:
            self._event(r, "rollout-rebased", verdict.rebased)
        await self._act(r, verdict)
        return verdict

    async def _act(self, r: RolloutRecord, v: Verdict) -> None:
        """Carry out a verdict: roll back, advance or promote, hold, or keep watching."""
        if r.holding is not None and v.move is not Move.HOLDING:
            self._event(r, "rollout-hold-cleared", f"{r.holding} hold cleared")
            r.holding = None
        if v.move is Move.ROLLBACK:
            self._close_step(r, v)
            await self._end(r, RolloutState.ROLLED_BACK, v.reason, v.rule, v.evidence)
        elif v.move is Move.PROMOTE:
            self._close_step(r, v)
            await self._end(r, RolloutState.PROMOTED, v.reason, v.rule, v.evidence)
        elif v.move is Move.ADVANCE:
            self._close_step(r, v)
            self._save(r, "rollout-advance", v.reason, v.evidence)
            await self._enter_step(r, r.step + 1)
        elif v.move is Move.HOLDING:
            # Passing trouble: keep the traffic where it is and look again next second;
            # one event when it starts (and `rollout status` shows it) until it clears.
            first = r.holding != v.rule
            r.holding = v.rule
            self._save(r, "rollout-holding" if first else None, v.reason, v.evidence)
        elif v.move is Move.HELD:
            r.state = RolloutState.HELD
            r.reason, r.rule = v.reason, v.rule
            self._save(r, "rollout-held", v.reason, v.evidence)
            await self._alert(r, "held", v.reason)
        else:
            self._save(r)

    def _close_step(self, r: RolloutRecord, v: Verdict | None = None) -> None:
        r.end_step(self.clock(), v.readings if v is not None else None)

    # -- ending -------------------------------------------------------------------------------------------

    async def _end(
        self, r: RolloutRecord, outcome: RolloutState, reason: str, rule: str, evidence: dict[str, Any]
    ) -> None:
        # Persist the decision first: a crash between here and the traffic move is
        # finished by resume_after_restart(), which sees where it was heading.
        self._close_step(r)
        r.state = _TRANSIENT.get(outcome, RolloutState.ROLLING_BACK)
        r.ending = outcome
        r.reason, r.rule = reason, rule
        self._save(r)
        await self._finish(r, evidence)

    async def _finish(self, r: RolloutRecord, evidence: dict[str, Any], message: str | None = None) -> None:
        outcome = r.ending or (RolloutState.PROMOTED if r.state == RolloutState.PROMOTING else RolloutState.ROLLED_BACK)
        await self._apply_outcome(r, outcome)
        r.state = outcome
        r.ending = None
        self._save(r, _ENDED_EVENT[outcome], message or r.reason or "", {"rule": r.rule, **evidence})
        self._windows.pop(r.id, None)
        self._last_eval.pop(r.id, None)
        await self.notifier.webhooks(r.policy.webhooks, "post-rollout", {**self._payload(r), "outcome": outcome})
        await self._alert(r, "promoted" if outcome == RolloutState.PROMOTED else "rollback", r.reason or "")

    async def _apply_outcome(self, r: RolloutRecord, outcome: RolloutState) -> None:
        policy = r.policy
        if policy.strategy == "ab" and policy.match is not None:
            try:
                await self.deployments.remove_header_route(r.service, policy.match.header, policy.match.value)
            except ShiploopError:
                pass  # already gone
        deployed = {d.version: d for d in self.deployments.deployments(r.service)}
        if r.candidate not in deployed or deployed[r.candidate].track not in (Track.CANARY, Track.SHADOW):
            return
        if outcome == RolloutState.PROMOTED:
            await self.deployments.promote(r.service, f"rollout #{r.id}")
        else:
            await self.deployments.rollback(r.service, f"rollout #{r.id}: {r.reason}")

    async def _alert(self, r: RolloutRecord, event: str, reason: str) -> None:
        text = f"shiploop: {r.service}@{r.candidate} {event.replace('rollback', 'rolled back')}: {reason}"
        failures = await self.notifier.alerts(r.policy.alerts, event, text, self._payload(r))
        for f in failures:
            self._event(r, "alert-failed", f)

    # -- commands -------------------------------------------------------------------------------------------

    def _current(self, service: str) -> RolloutRecord:
        r = self.latest(service)
        if r is None or not r.active:
            raise Conflict(f"{service} has no rollout in progress", hint=f"start one: shiploop rollout {service}")
        return r

    async def pause(self, service: str) -> dict[str, Any]:
        async with self._lock(service):
            r = self._current(service)
            r.state = RolloutState.PAUSED
            self._save(r, "rollout-paused", "paused by hand")
            return self.view(r)

    async def resume(self, service: str) -> dict[str, Any]:
        async with self._lock(service):
            r = self._current(service)
            if r.state in (RolloutState.PAUSED, RolloutState.HELD):
                # The step's clock starts again; its evidence (every step's readings) is kept.
                r.state = RolloutState.PROGRESSING
                if r.current is not None:
                    r.current.clock_from = self.clock()
                r.reason = r.rule = None
                self._save(r, "rollout-resumed", "resumed by hand")
            return self.view(r)

    async def abort(self, service: str) -> dict[str, Any]:
        async with self._lock(service):
            r = self._current(service)
            await self._end(r, RolloutState.ABORTED, "aborted by hand", "by_hand", r.last or {})
            return self.view(self.get(r.id))

    async def promote_now(self, service: str) -> dict[str, Any]:
        async with self._lock(service):
            r = self._current(service)
            await self._end(r, RolloutState.PROMOTED, "promoted by hand", "by_hand", r.last or {})
            return self.view(self.get(r.id))

    async def fail_unstarted(self, service: str, reason: str) -> dict[str, Any] | None:
        """End a rollout whose start broke off before its first step (a metric source that never answered):
        failed, with all traffic on stable, instead of pending with its first weights set and nobody judging."""
        async with self._lock(service):
            r = self.latest(service)
            if r is None or r.state != RolloutState.PENDING or r.steps:
                return None
            await self._end(r, RolloutState.FAILED, reason, "start_failed", {})
            return self.view(self.get(r.id))

    async def resume_after_restart(self) -> None:
        """A new daemon: finish what a dead one left half done; never keep an unaccounted candidate."""
        unfinished = self.store.rollouts_in((RolloutState.PROMOTING, RolloutState.ROLLING_BACK))
        for r in self.active() + [RolloutRecord.from_row(row) for row in unfinished]:
            deployed = {d.version for d in self.deployments.deployments(r.service)}
            if r.state in (RolloutState.PROMOTING, RolloutState.ROLLING_BACK):
                await self._finish(r, {}, f"finished after a restart: {r.reason}")
            elif r.candidate not in deployed or not r.steps:
                why = "is no longer deployed" if r.candidate not in deployed else "has no step readings"
                await self._end(
                    r,
                    RolloutState.FAILED,
                    f"the daemon restarted and cannot account for the candidate: {r.candidate} {why}",
                    "lost_evidence",
                    {},
                )
            else:
                self._save(r, "rollout-resumed", "resumed after a daemon restart")
