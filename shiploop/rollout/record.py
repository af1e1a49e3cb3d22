"""The typed rollout record: what a rollout is, where it stands, and every step's readings.

Each step entered keeps its weight, when it started, the cumulative readings
of candidate and baseline at its start and, once it ended, at its end: the
evidence of every step (a stratum) is derivable from the record alone, by
this daemon or by the next one after a restart.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass, field
from typing import Any

from shiploop.naming import ACTIVE_ROLLOUT_STATES, RolloutState
from shiploop.rollout.readings import Pair, Reading, Stratum
from shiploop.spec import RolloutPolicy
from shiploop.store import RolloutRow


@functools.lru_cache(maxsize=64)
def _policy(text: str) -> RolloutPolicy:
    # Every tick loads the active records; validating the same policy again each second is waste.
    return RolloutPolicy.model_validate_json(text)


@dataclass
class StepRecord:
    index: int
    weight: int  # candidate percent (0 for mirror and ab)
    started_at: float
    start: Pair
    clock_from: float  # when the step's clock (min_step, max_step) started: started_at, or the last resume
    ended_at: float | None = None
    end: Pair | None = None
    latest: Pair | None = None  # the last reading judged in this step: a counter below it was reset
    # After an in-place cluster update reset some counters (see core.judge), the step
    # counts from `base`, and `carried` holds what it had counted before.
    base: Pair | None = None
    carried: Pair | None = None

    def stratum(self, now: Pair | None = None) -> Stratum:
        """The step's deltas: to its end, or (for the current step) to `now`. May raise CountersReset."""
        last = self.end if self.ended_at is not None else now
        if last is None:
            if self.carried is not None:
                return Stratum(self.index, self.weight, self.carried.candidate, self.carried.baseline)
            zero = Reading(self.started_at)
            return Stratum(self.index, self.weight, zero, zero)
        delta = last.minus(self.counts_from)
        if self.carried is not None:
            delta = self.carried.plus(delta)
        return Stratum(self.index, self.weight, delta.candidate, delta.baseline)

    @property
    def counts_from(self) -> Pair:
        """The reading the step's open segment counts from: its start, or the base of the last rebase."""
        return self.base if self.base is not None else self.start

    def rebased(self, now: Pair) -> StepRecord:
        """The step counting from `now` on, keeping what it counted up to its last good reading."""
        kept = self.latest.minus(self.counts_from) if self.latest is not None else None
        if kept is not None and self.carried is not None:
            kept = self.carried.plus(kept)
        return dataclasses.replace(self, base=now, carried=kept or self.carried, latest=now)

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "weight": self.weight,
            "started_at": self.started_at,
            "clock_from": self.clock_from,
            "start": self.start.to_json(),
            "ended_at": self.ended_at,
            "end": self.end.to_json() if self.end is not None else None,
            "latest": self.latest.to_json() if self.latest is not None else None,
            "base": self.base.to_json() if self.base is not None else None,
            "carried": self.carried.to_json() if self.carried is not None else None,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> StepRecord:
        return cls(
            index=d["index"],
            weight=d["weight"],
            started_at=d["started_at"],
            start=Pair.from_json(d["start"]),
            clock_from=d.get("clock_from", d["started_at"]),
            ended_at=d.get("ended_at"),
            end=Pair.from_json(d["end"]) if d.get("end") else None,
            latest=Pair.from_json(d["latest"]) if d.get("latest") else None,
            base=Pair.from_json(d["base"]) if d.get("base") else None,
            carried=Pair.from_json(d["carried"]) if d.get("carried") else None,
        )


@dataclass
class RolloutRecord:
    id: int
    service: str
    candidate: str
    baseline: str
    policy: RolloutPolicy
    state: RolloutState
    started_at: float
    updated_at: float
    steps: list[StepRecord] = field(default_factory=list)  # every step entered; the last is the current one
    reason: str | None = None  # why it ended or is held
    rule: str | None = None  # the rule behind `reason`: harm, limit, lost_evidence, webhook, by_hand, ...
    ending: RolloutState | None = None  # the final state a promoting/rolling_back rollout is heading for
    holding: str | None = None  # a passing hold (srm, data_error) looked at again every second
    last: dict[str, Any] | None = None  # the latest evidence, as shown by `rollout status`

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_ROLLOUT_STATES

    @property
    def step(self) -> int:
        """Index of the current step (0 before the first one starts)."""
        return self.steps[-1].index if self.steps else 0

    @property
    def current(self) -> StepRecord | None:
        return self.steps[-1] if self.steps else None

    @property
    def step_count(self) -> int:
        return len(self.policy.steps) if self.policy.strategy == "canary" else 1

    def weight_of(self, index: int) -> int:
        return self.policy.steps[index] if self.policy.strategy == "canary" else 0

    @property
    def weight(self) -> int:
        return self.weight_of(self.step)

    @property
    def is_last_step(self) -> bool:
        return self.step + 1 >= self.step_count

    def begin_step(self, index: int, now: float, start: Pair) -> StepRecord:
        """Enter step `index` (its weights already applied) from the readings `start`."""
        step = StepRecord(index, self.weight_of(index), now, start, clock_from=now)
        self.steps.append(step)
        return step

    def end_step(self, now: float, readings: Pair | None) -> None:
        """Close the current step with its last readings (None if there were none)."""
        step = self.current
        if step is not None and step.ended_at is None:
            step.ended_at = now
            step.end = readings

    def strata(self, now: Pair | None = None) -> list[Stratum]:
        """Every step's evidence, the current one up to `now`. Raises CountersReset if a counter went down."""
        return [s.stratum(now) for s in self.steps]

    # -- persistence --------------------------------------------------------------------------------

    @functools.cached_property
    def _policy_data(self) -> Any:
        return json.loads(self.policy.model_dump_json())

    def data_json(self) -> str:
        return json.dumps(
            {
                "policy": self._policy_data,
                "steps": [s.to_json() for s in self.steps],
                "holding": self.holding,
                "last": self.last,
                "rule": self.rule,
                "ending": self.ending,
            }
        )

    @classmethod
    def from_row(cls, row: RolloutRow) -> RolloutRecord:
        data = row.data
        # Rows written before steps were recorded (data: policy, start_readings, step_readings, ...)
        # load with no steps: history shows them, and a restart ends them as unaccounted for.
        steps = [StepRecord.from_json(s) for s in data.get("steps", [])]
        return cls(
            id=row.id,
            service=row.service,
            candidate=row.candidate,
            baseline=row.baseline,
            policy=_policy(json.dumps(data["policy"], sort_keys=True)),
            state=RolloutState(row.state),
            started_at=row.started_at,
            updated_at=row.updated_at,
            steps=steps,
            reason=row.outcome_reason,
            rule=data.get("rule"),
            ending=RolloutState(data["ending"]) if data.get("ending") else None,
            holding=data.get("holding"),
            last=data.get("last"),
        )
