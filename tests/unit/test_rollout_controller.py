"""The rollout state machine on a fake clock: every transition in docs/decisions.md, in milliseconds."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from shiploop.errors import ShiploopError
from shiploop.naming import RolloutState
from tests.unit.rollout_fakes import CANDIDATE, SERVICE, STABLE, Harness, fast_policy


def test_good_candidate_is_promoted_through_every_step_and_each_step_keeps_its_readings(tmp_path: Path):
    h = Harness(tmp_path)
    h.start()
    assert h.deployments.weight(CANDIDATE) == 10
    assert h.run_to_end() == "promoted"
    r = h.record()
    assert [s.weight for s in r.steps] == [10, 50, 100]
    assert all(s.end is not None and s.ended_at is not None for s in r.steps)
    # Every step's evidence is derivable from the record: its strata add up to what was served in steps.
    strata = r.strata()
    assert [s.weight for s in strata] == [10, 50, 100]
    assert all(s.candidate.requests > 0 for s in strata)
    assert strata[0].baseline.requests > 5 * strata[0].candidate.requests  # 10% weight
    assert h.deployments.track(CANDIDATE) == "stable" and STABLE not in h.deployments.rows
    assert h.kinds() == [
        "rollout-started",
        "rollout-step",
        "rollout-advance",
        "rollout-step",
        "rollout-advance",
        "rollout-step",
        "rollout-promoted",
    ]
    assert h.events()[-1]["evidence"]["rule"] == "pass"
    assert [c[0] for c in h.notifier.webhook_calls] == ["pre-rollout", "step", "step", "post-rollout"]
    assert h.notifier.alert_calls[-1][0] == "promoted"


def test_harmful_candidate_is_rolled_back_naming_the_rule_and_the_numbers(tmp_path: Path):
    h = Harness(tmp_path)
    h.traffic.error_rate[CANDIDATE] = 0.2
    h.start()
    assert h.run_to_end() == "rolled_back"
    r = h.record()
    assert r.rule == "harm"
    assert r.reason is not None and r.reason.startswith("harm: error_rate: candidate ")
    assert " of " in r.reason and "tolerance of +0.2 points" in r.reason
    assert "Λ" not in r.reason  # plain words for people; the statistic stays in the evidence
    event = h.events()[-1]
    assert event["kind"] == "rollout-rolled-back" and event["message"] == r.reason
    assert event["evidence"]["rule"] == "harm" and event["evidence"]["guardrails"][0]["harmful"]
    (reason,) = h.deployments.called("rollback")
    assert reason.startswith(f"rollout #{r.id}: harm: error_rate")
    assert h.deployments.weight(STABLE) == 100 and CANDIDATE not in h.deployments.rows
    history = h.controller.history(SERVICE)
    assert history[0]["rule"] == "harm" and history[0]["reason"] == r.reason


def test_a_limit_rolls_back_on_the_candidate_alone(tmp_path: Path):
    h = Harness(tmp_path, fast_policy(guardrails=[], limits=[{"metric": "error_rate", "max": 0.3}]))
    h.traffic.error_rate[CANDIDATE] = 0.6
    h.start()
    assert h.run_to_end() == "rolled_back"
    r = h.record()
    assert r.rule == "limit" and "limit 30.0%" in (r.reason or "")


def test_limit_window_never_reaches_back_before_the_current_step(tmp_path: Path):
    """A candidate that failed before the step began is not judged by a limit on those failures."""
    from shiploop.rollout.core import LIMIT_WINDOW_S, limit_window
    from shiploop.rollout.readings import Reading

    step_start = Reading(100.0, 1000, 900)
    old = [Reading(95.0, 900, 850), Reading(99.0, 990, 890)]
    window = limit_window(old, Reading(101.0, 1010, 900), step_start)
    assert window[0] == step_start and window[-1].ts == 101.0
    later = limit_window(window, Reading(100.0 + LIMIT_WINDOW_S + 2, 1200, 900), step_start)
    assert later[0].ts >= later[-1].ts - LIMIT_WINDOW_S


def test_sample_ratio_mismatch_holds_and_clears(tmp_path: Path):
    h = Harness(tmp_path, fast_policy(max_step=600.0))
    h.start()
    h.traffic.split = 0.5  # for a second the router sends half where 10% was asked for
    h.run(1)
    r = h.record()
    assert r.state == RolloutState.PROGRESSING and r.holding == "srm"
    assert h.kinds().count("rollout-holding") == 1
    view = h.view()
    assert view["summary"].startswith("holding at step 1/3: sample ratio mismatch")
    assert "shiploop rollout abort web" in view["next"]
    h.traffic.split = None  # routing fixed: the step's split comes back to its weight
    h.run(3)
    assert h.record().holding == "srm"
    assert h.kinds().count("rollout-holding") == 1  # one event per hold, not one a second
    h.run(100, until=lambda _: h.record().holding is None)
    assert h.record().holding is None and "rollout-hold-cleared" in [e["kind"] for e in h.events("rollout-hold")]
    assert h.run_to_end() == "promoted"


def test_unreadable_envoy_holds_as_data_error_then_clears(tmp_path: Path):
    h = Harness(tmp_path)
    h.start()
    h.run(1)
    h.traffic.unavailable = "envoy has no stats for web_v2cand"
    h.run(3)
    r = h.record()
    assert r.state == RolloutState.PROGRESSING and r.holding == "data_error"
    holding = [e for e in h.events() if e["kind"] == "rollout-holding"]
    assert len(holding) == 1 and "envoy has no stats for web_v2cand" in holding[0]["message"]
    assert "metrics unavailable" in h.view()["summary"]
    h.traffic.unavailable = None
    h.run(1)
    assert h.record().holding is None
    assert h.run_to_end() == "promoted"


def test_app_scrape_errors_hold_instead_of_rolling_back(tmp_path: Path):
    """Issue 6 item 8: a replica that fails its scrape must hold the rollout, not end it as lost evidence."""
    policy = fast_policy(guardrails=[{"metric": "app:orders_failed_total/orders_total", "tolerance": 0.01}])
    h = Harness(tmp_path, policy)
    h.start()
    h.run(2)
    h.traffic.app_errors = ("v2cand: replica on port 4242: /metrics: ConnectError",)
    h.run(3)
    r = h.record()
    assert r.state == RolloutState.PROGRESSING and r.holding == "data_error"
    assert "metric source errors" in (r.last or {})["reason"]
    h.traffic.app_errors = ()
    assert h.run_to_end() == "promoted"


def test_unreadable_envoy_past_max_step_does_what_on_no_data_says(tmp_path: Path):
    for on_no_data, final in (("hold", "held"), ("fail", "rolled_back"), ("pass", "promoted")):
        h = Harness(tmp_path / on_no_data, fast_policy(steps=[100], on_no_data=on_no_data))
        h.start()
        h.traffic.unavailable = "envoy stats: ConnectError"
        assert h.run_to_end() == final, on_no_data
        assert h.record().rule == ("no_data" if final != "promoted" else "no_data")


def test_no_traffic_holds_for_a_person_with_on_no_data_hold(tmp_path: Path):
    h = Harness(tmp_path)
    h.traffic.rps = 0
    h.start()
    h.run(5)
    view = h.view()
    assert view["summary"].startswith("waiting for traffic: 0 of 50 canary requests; try: shiploop load ")
    assert h.run_to_end() == "held"
    r = h.record()
    assert r.rule == "no_data" and r.step == 0
    assert h.deployments.weight(CANDIDATE) == 10  # held: the traffic stays where it was
    assert h.notifier.alert_calls[-1][0] == "held"
    assert h.view()["next"] == [
        "shiploop rollout resume web",
        "shiploop rollout promote web",
        "shiploop rollout abort web",
    ]


def test_inconclusive_at_max_step_holds_with_on_inconclusive_hold_and_resume_restarts_the_clock(tmp_path: Path):
    policy = fast_policy(
        require_noninferiority=True,
        on_inconclusive="hold",
        guardrails=[{"metric": "error_rate", "tolerance": 0.0}],
    )
    h = Harness(tmp_path, policy)
    h.start()
    assert h.run_to_end() == "held"
    assert h.record().rule == "inconclusive"
    held_at = h.clock.now
    asyncio.run(h.controller.resume(SERVICE))
    r = h.record()
    assert r.state == RolloutState.PROGRESSING and r.reason is None
    assert r.current is not None and r.current.clock_from == held_at
    assert h.run_to_end() == "held"  # still inconclusive one max_step later
    assert h.clock.now - held_at >= policy.max_step


def test_pause_stops_judging_and_resume_continues(tmp_path: Path):
    h = Harness(tmp_path)
    h.traffic.error_rate[CANDIDATE] = 0.5
    h.start()
    asyncio.run(h.controller.pause(SERVICE))
    reads = h.traffic.reads
    h.run(30)
    assert h.state() == "paused" and h.traffic.reads == reads  # nothing judged while paused
    asyncio.run(h.controller.resume(SERVICE))
    assert h.run_to_end() == "rolled_back"
    assert h.kinds()[2:4] == ["rollout-paused", "rollout-resumed"]


def test_abort_and_promote_by_hand(tmp_path: Path):
    h = Harness(tmp_path / "abort")
    h.start()
    h.run(2)
    view = asyncio.run(h.controller.abort(SERVICE))
    assert view["state"] == "aborted" and view["rule"] == "by_hand"
    assert h.deployments.called("rollback") and CANDIDATE not in h.deployments.rows
    with pytest.raises(ShiploopError, match="no rollout in progress"):
        asyncio.run(h.controller.abort(SERVICE))

    h = Harness(tmp_path / "promote")
    h.start()
    h.run(2)
    view = asyncio.run(h.controller.promote_now(SERVICE))
    assert view["state"] == "promoted" and h.deployments.track(CANDIDATE) == "stable"
    assert h.record().steps[-1].ended_at is not None


def test_a_second_rollout_is_refused_while_one_is_active(tmp_path: Path):
    h = Harness(tmp_path)
    h.start()
    with pytest.raises(ShiploopError, match="already has rollout #1"):
        h.start()


def test_restart_resumes_a_progressing_rollout_on_the_same_evidence(tmp_path: Path):
    h = Harness(tmp_path)
    h.start()
    h.run(5)
    before = h.record()
    h.controller = h.new_controller()  # the daemon died; a new one starts on the same store
    asyncio.run(h.controller.resume_after_restart())
    after = h.record()
    assert after.state == RolloutState.PROGRESSING and after.steps == before.steps
    assert h.kinds()[-1] == "rollout-resumed"
    assert h.run_to_end() == "promoted"


@pytest.mark.parametrize(
    ("half_done", "final", "operation"),
    [("promoting", "promoted", "promote"), ("rolling_back", "rolled_back", "rollback")],
)
def test_restart_finishes_a_half_done_ending(tmp_path: Path, half_done: str, final: str, operation: str):
    h = Harness(tmp_path)
    h.start()
    h.run(3)
    r = h.record()
    r.state = RolloutState(half_done)  # decided and saved, then the daemon died before moving traffic
    r.reason = "decided before the crash"
    h.controller._save(r)
    h.controller = h.new_controller()
    asyncio.run(h.controller.resume_after_restart())
    assert h.state() == final
    assert len(h.deployments.called(operation)) == 1
    assert h.events()[-1]["message"] == "finished after a restart: decided before the crash"


def test_restart_ends_a_rollout_whose_candidate_is_gone(tmp_path: Path):
    h = Harness(tmp_path)
    h.start()
    h.run(2)
    del h.deployments.rows[CANDIDATE]
    h.controller = h.new_controller()
    asyncio.run(h.controller.resume_after_restart())
    r = h.record()
    assert r.state == RolloutState.FAILED and "cannot account for the candidate" in (r.reason or "")


def test_lost_evidence_rolls_back_naming_the_counter(tmp_path: Path):
    h = Harness(tmp_path)
    h.start()
    h.run(5)
    h.traffic.reset(CANDIDATE)  # envoy restarted: its counters begin again at zero
    assert h.run_to_end() == "rolled_back"
    r = h.record()
    assert r.rule == "lost_evidence"
    assert "request count of the candidate went down from" in (r.reason or "")
    assert h.events()[-1]["evidence"]["rule"] == "lost_evidence"
    assert h.deployments.weight(STABLE) == 100


def test_failing_webhooks_and_alerts(tmp_path: Path):
    h = Harness(tmp_path / "pre")
    h.notifier.failing_webhooks = {"pre-rollout"}
    h.notifier.failing_alerts = True
    view = h.start()
    assert view["state"] == "failed" and view["rule"] == "webhook" and "pre-rollout webhook" in view["reason"]
    assert h.deployments.weight(STABLE) == 100
    assert [e["kind"] for e in h.store.events(SERVICE)][-1] == "alert-failed"

    h = Harness(tmp_path / "step")
    h.notifier.failing_webhooks = {"step"}
    h.start()
    assert h.run_to_end() == "rolled_back"
    r = h.record()
    assert r.rule == "webhook" and "step webhook" in (r.reason or "") and r.step == 0


def test_mirror_and_ab_have_one_step(tmp_path: Path):
    h = Harness(tmp_path / "mirror", fast_policy(strategy="mirror"))
    h.start()
    assert h.deployments.track(CANDIDATE) == "shadow"
    assert h.run_to_end() == "promoted" and len(h.record().steps) == 1

    h = Harness(tmp_path / "ab", fast_policy(strategy="ab", match={"header": "x-beta", "value": "1"}))
    h.start()
    assert h.deployments.header_routes == {("x-beta", "1"): CANDIDATE}
    assert h.run_to_end() == "promoted"
    assert h.deployments.header_routes == {}  # the experiment's route is gone


def test_identical_candidate_right_after_an_incident_is_promoted_when_a_cluster_is_updated(tmp_path: Path):
    """Issue 6 item 10, reproduced: both versions failed 20% for 30 s while a first identical candidate
    rolled out (promoted); a second identical candidate followed at once. An endpoint change during it
    (a replica leaving or rejoining) updates the baseline's cluster in place, and Envoy starts its 5xx
    counter again from zero while its request count carries on. The old controller read that as
    "envoy restarted", lost evidence, and rolled the good candidate back 14 s in, before any request failed.
    """
    policy = fast_policy(steps=[5, 25, 50, 100], min_step=20.0, max_step=300.0, min_samples=200)
    h = Harness(tmp_path, policy)
    h.deployments.next_candidate = "v2first"
    h.traffic.error_rate = {STABLE: 0.2, "v2first": 0.2}  # the incident: both versions fail
    h.start()
    h.run(30)
    h.traffic.error_rate = {}  # the incident is over
    assert h.run_to_end() == "promoted"
    assert h.traffic.counter("v2first").errors > 0  # the new stable's counter holds the incident

    h.deployments.next_candidate = CANDIDATE
    h.start()
    h.run(14)
    h.traffic.update_cluster("v2first")  # the baseline's cluster is updated in place
    assert h.run_to_end() == "promoted"
    r = h.record()
    assert r.candidate == CANDIDATE and h.deployments.track(CANDIDATE) == "stable"
    (rebased,) = [e for e in h.events() if e["kind"] == "rollout-rebased"]
    assert "envoy's 5xx count of the baseline went down from" in rebased["message"]
    # The evidence before the update was kept: the first step counted the baseline's requests all along.
    first = r.strata()[0]
    assert first.baseline.requests > 90 * 20


def test_a_request_count_that_goes_down_is_still_lost_evidence(tmp_path: Path):
    h = Harness(tmp_path)
    h.start()
    h.run(3)
    h.traffic.reset(STABLE)  # envoy restarted (or the cluster was re-created): requests start from zero
    h.run(1)
    r = h.record()
    assert r.state == RolloutState.ROLLED_BACK and r.rule == "lost_evidence"
    assert "request count of the baseline went down from" in (r.reason or "")


def test_a_rebased_step_still_shows_everything_it_counted(tmp_path: Path):
    h = Harness(tmp_path, fast_policy(steps=[10, 100], min_step=5.0))
    h.traffic.error_rate[STABLE] = 0.05
    h.start()
    h.run(2)
    h.traffic.update_cluster(STABLE)
    assert h.run_to_end() == "promoted"
    first = h.view()["progress"][0]
    served = h.record().steps[0]
    assert served.carried is not None and served.base is not None
    # Only the second of the update is missing from the step's count of the baseline's requests.
    assert first["baseline"]["requests"] >= 90 * (served.ended_at - served.started_at - 1) * 0.9
