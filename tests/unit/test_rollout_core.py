"""The pure judge and its seams: readings, strata, reasons in plain words, the view's numbers."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

import pytest

from shiploop.gateway.admin import EnvoyAdmin, Histogram
from shiploop.naming import RolloutState
from shiploop.procs import free_port
from shiploop.rollout.core import Move, judge
from shiploop.rollout.envoy_readings import EnvoyReadings
from shiploop.rollout.judge import guardrail_results
from shiploop.rollout.readings import Observation, Pair, Reading, ReadingUnavailable, Stratum
from shiploop.rollout.record import RolloutRecord, StepRecord
from shiploop.rollout.view import rollout_view
from tests.unit.rollout_fakes import fast_policy


def record(policy: Any = None, start: Pair | None = None, at: float = 100.0) -> RolloutRecord:
    policy = policy or fast_policy()
    start = start or Pair(Reading(at, 0, 0), Reading(at, 0, 0))
    r = RolloutRecord(1, "web", "v2", "v1", policy, RolloutState.PROGRESSING, at, at)
    r.steps.append(StepRecord(0, r.weight_of(0), at, start, clock_from=at))
    return r


def pair(t: float, cand: tuple[int, int], base: tuple[int, int], app: dict[str, float] | None = None) -> Pair:
    return Pair(Reading(t, *cand, (), dict(app or {})), Reading(t, *base, (), dict(app or {})))


def test_reading_unavailable_is_raisable_with_a_message():
    """Issue 6 item 8: it was a field-less dataclass, so raising it with a message was a TypeError."""
    with pytest.raises(ReadingUnavailable, match="envoy has no stats for web_v2"):
        raise ReadingUnavailable("envoy has no stats for web_v2")


def test_envoy_readings_raise_reading_unavailable_when_envoy_cannot_be_read():
    readings = EnvoyReadings(lambda: None, lambda s, v: [], clock=lambda: 5.0)
    with pytest.raises(ReadingUnavailable, match="envoy admin is not attached"):
        asyncio.run(readings.read("web", "v2", "v1", fast_policy()))
    asyncio.run(readings.aclose())


class FakeAdmin:
    """Envoy's admin answers for two clusters (the parsing is tested against a real Envoy elsewhere)."""

    async def stats(self, pattern: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for c, n in (("web_v2", 40), ("web_v1", 400)):
            out |= {f"cluster.{c}.upstream_rq_completed": n, f"cluster.{c}.upstream_rq_total": n}
        return out

    async def histograms(self, pattern: str) -> dict[str, Histogram]:
        return {}


def test_an_app_scrape_error_is_a_source_error_and_leaves_app_counters_out():
    """A replica that does not answer /metrics: Envoy's counts stand, the app's partial sum is dropped."""
    dead = free_port()  # nothing listens there
    readings = EnvoyReadings(lambda: cast(EnvoyAdmin, FakeAdmin()), lambda s, v: [dead], clock=lambda: 5.0)
    policy = fast_policy(guardrails=[{"metric": "app:orders_failed_total/orders_total", "tolerance": 0.01}])
    try:
        observed = asyncio.run(readings.read("web", "v2", "v1", policy))
    finally:
        asyncio.run(readings.aclose())
    assert observed.source_errors and f"port {dead}" in observed.source_errors[0]
    assert observed.readings.candidate.requests == 40 and observed.readings.candidate.app == {}


def test_judge_holds_on_source_errors_and_on_an_unreadable_envoy():
    r = record(fast_policy(guardrails=[{"metric": "app:orders_failed_total/orders_total", "tolerance": 0.01}]))
    now = pair(105.0, (100, 0), (900, 0))
    v = judge(r, Observation(now, ("v2: replica on port 1: /metrics: ConnectError",)), 105.0)
    assert v.move is Move.HOLDING and v.rule == "data_error" and "ConnectError" in v.reason
    v = judge(r, ReadingUnavailable("envoy stats: ConnectError"), 105.0)
    assert v.move is Move.HOLDING and v.rule == "data_error" and "envoy stats: ConnectError" in v.reason
    # Past max_step with no readable data: on_no_data (hold) decides, and a person is needed.
    v = judge(r, ReadingUnavailable("envoy stats: ConnectError"), 100.0 + r.policy.max_step)
    assert v.move is Move.HELD and v.rule == "no_data"


def test_judge_is_pure_and_names_the_numbers_of_a_rollback():
    r = record()
    now = pair(110.0, (100, 30), (900, 1))
    first = judge(r, Observation(now), 110.0)
    assert judge(r, Observation(now), 110.0) == first  # no clock, no I/O, no state kept
    assert first.move is Move.ROLLBACK and first.rule == "harm"
    assert "candidate 30% (30 of 100) vs baseline 0.111% (1 of 900)" in first.reason
    assert "Λ" not in first.reason and "e^" not in first.reason


def test_a_counter_below_the_step_start_is_lost_evidence():
    r = record(start=pair(100.0, (500, 5), (5000, 5)))
    v = judge(r, Observation(pair(101.0, (3, 0), (5100, 5))), 101.0)
    assert v.move is Move.ROLLBACK and v.rule == "lost_evidence"
    assert "envoy's request count of the candidate went down from 500 to 3" in v.reason


def test_guardrails_take_strata_and_sum_them_for_now():
    policy = fast_policy()
    strata = [
        Stratum(0, 10, Reading(0.0, 100, 1), Reading(0.0, 900, 1)),
        Stratum(1, 50, Reading(0.0, 500, 1), Reading(0.0, 500, 1)),
    ]
    (g,) = guardrail_results(policy, strata)
    assert (g.result.candidate.trials, g.result.candidate.events) == (600, 2)
    assert (g.result.baseline.trials, g.result.baseline.events) == (1400, 2)


def test_strata_come_from_the_record_alone():
    r = record(start=pair(100.0, (10, 0), (100, 0)))
    r.steps[0].ended_at, r.steps[0].end = 110.0, pair(110.0, (60, 1), (550, 2))
    r.steps.append(StepRecord(1, 50, 111.0, pair(111.0, (62, 1), (560, 2)), clock_from=111.0))
    restored = RolloutRecord.from_row(_row_of(r))
    strata = restored.strata(pair(115.0, (262, 3), (760, 2)))
    assert [(s.index, s.weight, s.candidate.requests, s.baseline.requests) for s in strata] == [
        (0, 10, 50, 450),
        (1, 50, 200, 200),
    ]


def _row_of(r: RolloutRecord) -> Any:
    import json

    from shiploop.store.db import RolloutRow

    return RolloutRow(
        r.id,
        r.service,
        r.candidate,
        r.baseline,
        r.state,
        r.step,
        json.loads(r.data_json()),
        r.started_at,
        r.updated_at,
        r.reason,
    )


def test_view_shows_progress_against_the_policy_and_no_rate_over_zero_requests():
    r = record()
    v = judge(r, Observation(pair(103.0, (12, 0), (108, 0))), 103.0)
    r.last = v.evidence
    view = rollout_view(r, 103.0, "http://127.0.0.1:8080/web/")
    (step,) = view["progress"]
    assert step["candidate"]["requests"] == 12 and step["min_samples"] == 50
    assert step["elapsed_s"] == 3.0 and step["min_step_s"] == 2.0 and step["max_step_s"] == 10.0
    assert view["summary"] == (
        "waiting for traffic: 12 of 50 canary requests; "
        "try: shiploop load http://127.0.0.1:8080/web/ --rps 17 --duration 60s"
    )
    (g,) = view["guardrails"]
    assert g["estimate"] is not None and g["interval"][0] <= g["estimate"] <= g["interval"][1]
    assert g["tolerance"] == 0.002
    empty = record()
    empty.last = judge(empty, Observation(pair(101.0, (0, 0), (0, 0))), 101.0).evidence
    (g,) = rollout_view(empty, 101.0)["guardrails"]
    assert g["candidate_rate"] is None and g["estimate"] is None and g["interval"] is None


def test_old_rows_without_steps_still_load(tmp_path: Path):
    from shiploop.store.db import Store

    store = Store(tmp_path / "state.db")
    data = '{"policy": {"steps": [5, 25, 50, 100]}, "start_readings": {}, "last": null}'
    rid = store.insert_rollout("web", "v2", "v1", "rolled_back", data, 1.0)
    r = RolloutRecord.from_row(store.rollout(rid))  # type: ignore[arg-type]
    assert r.steps == [] and r.state == RolloutState.ROLLED_BACK and r.policy.steps == [5, 25, 50, 100]
