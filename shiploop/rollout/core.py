"""The pure rollout core: a record and what was read now in, a verdict with its evidence out.

No I/O and no clock reads: the controller reads, passes the time, and acts on
the verdict; `bench/rollouts.py` calls the same `judge` on simulated counts.

What `judge` applies, from the record alone:
- the evidence of every step (strata: deltas while the weights were constant),
  for the guardrails;
- the current step's requests and age, for min_samples, min_step and max_step;
- the candidate's last `LIMIT_WINDOW_S` seconds, never reaching back before
  the current step began, for the hard limits;
- the current step's split against its weight, for the sample-ratio check;
- a request count that went down (Envoy restarted, or the cluster was
  re-created): the evidence is lost, roll back naming it;
- an error count or latency histogram that went down while requests did not (the
  cluster was updated in place): keep the evidence so far and count on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from shiploop.analysis import GuardrailResult, SrmResult, StepDecision, StepInputs, evaluate_step, srm_test
from shiploop.rollout.judge import guardrail_results, limit_breaches
from shiploop.rollout.readings import CountersReset, Observation, Pair, Reading, ReadingUnavailable, Stratum
from shiploop.rollout.record import RolloutRecord, StepRecord

LIMIT_WINDOW_S = 10.0


class Move(StrEnum):
    WATCH = "watch"  # nothing to do yet
    HOLDING = "holding"  # passing trouble (srm, data_error): stay, look again next second
    HELD = "held"  # wait for a person: resume, promote or abort
    ADVANCE = "advance"  # to the next step
    PROMOTE = "promote"
    ROLLBACK = "rollback"


@dataclass(frozen=True)
class Verdict:
    move: Move
    rule: str  # the rule that decided: limit, harm, srm, no_data, data_error, lost_evidence, min_step, pass, ...
    reason: str  # one plain sentence with the numbers
    evidence: dict[str, Any]  # JSON-ready; what `rollout status` and the events show
    window: tuple[Reading, ...] = ()  # the candidate's readings in the limit window, for the next call
    readings: Pair | None = None  # what was judged (a step that ends keeps it as its end)
    strata: tuple[Stratum, ...] = field(default=(), repr=False)
    step: StepRecord | None = None  # the current step as judged (its latest reading; rebased if needed)
    rebased: str | None = None  # why the step now counts from this reading (an in-place cluster update)


def apply(record: RolloutRecord, verdict: Verdict) -> None:
    """Keep what the judge saw in the record: the last evidence, and the current step as judged."""
    record.last = verdict.evidence
    if verdict.step is not None and record.steps:
        record.steps[-1] = verdict.step


def _pct(x: float) -> str:
    return f"{100.0 * x:.3g}%"


def _points(x: float) -> str:
    return f"{100.0 * x:+.3g} points"


def step_inputs(record: RolloutRecord, now: float, **measured: Any) -> StepInputs:
    """The policy's rules and the current step's clock, with what was measured."""
    policy = record.policy
    step = record.current
    clock_from = step.clock_from if step is not None else record.started_at
    return StepInputs(
        elapsed_s=now - clock_from,
        min_step_s=policy.min_step,
        max_step_s=policy.max_step,
        min_samples=policy.min_samples,
        on_inconclusive=policy.on_inconclusive,
        on_no_data=policy.on_no_data,
        require_noninferiority=policy.require_noninferiority,
        **measured,
    )


def limit_window(window: Sequence[Reading], latest: Reading, step_start: Reading) -> tuple[Reading, ...]:
    """The candidate's readings of the last LIMIT_WINDOW_S seconds, oldest first, none before the step began.

    The reading the step counts from seeds the window, so a window never spans
    two steps, two rollouts, a daemon restart or a counter reset: limits judge
    the candidate at its current weight, on counts this record can account for.
    """
    kept = [r for r in window if r.ts >= step_start.ts]
    if not kept:
        kept = [step_start]
    kept.append(latest)
    while len(kept) > 1 and kept[0].ts < latest.ts - LIMIT_WINDOW_S:
        kept.pop(0)
    return tuple(kept)


def harm_sentence(g: GuardrailResult) -> str:
    """A rollback on harm in plain words: both rates, the difference and how sure, against the tolerance."""
    r = g.result
    label = f"{g.name} ({g.detail})" if g.detail else g.name
    confidence = 100.0 * (1.0 - r.alpha)
    return (
        f"{label}: candidate {_pct(r.candidate_rate)} ({r.candidate.events} of {r.candidate.trials}) vs baseline "
        f"{_pct(r.baseline_rate)} ({r.baseline.events} of {r.baseline.trials}); the candidate is worse by "
        f"{_points(r.lower_bound)} or more ({confidence:.3g}% confidence), over the tolerance of {_points(r.tolerance)}"
    )


def _move_of(decision: StepDecision, record: RolloutRecord) -> Move:
    if decision.action == "rollback":
        return Move.ROLLBACK
    if decision.action == "advance":
        return Move.PROMOTE if record.is_last_step else Move.ADVANCE
    if decision.action == "hold":
        return Move.HOLDING if decision.rule in ("srm", "data_error") else Move.HELD
    # Metric-source errors are a hold that clears by itself: shown as one, judged again next second.
    return Move.HOLDING if decision.rule == "data_error" else Move.WATCH


def _reason(decision: StepDecision, guardrails: Sequence[GuardrailResult]) -> str:
    if decision.rule == "harm":
        harmful = sorted((g for g in guardrails if g.result.harmful), key=lambda g: -g.result.log_lambda)
        more = f" (and {len(harmful) - 1} more guardrail(s))" if len(harmful) > 1 else ""
        return "harm: " + harm_sentence(harmful[0]) + more
    if decision.rule == "srm":
        return decision.reason + "; the router is not splitting traffic as configured, holding until it does"
    return decision.reason


def _counts(r: Reading) -> dict[str, int]:
    return {"requests": r.requests, "errors": r.errors}


def _guardrail_json(g: GuardrailResult) -> dict[str, Any]:
    r = g.result
    verdict = "harm" if r.harmful else ("ok" if r.noninferior else "watching")
    return {"name": g.name, "detail": g.detail, "verdict": verdict, **r.as_dict()}


def _evidence(
    record: RolloutRecord,
    now: float,
    decision: StepDecision,
    move: Move,
    reason: str,
    inputs: StepInputs,
    strata: Sequence[Stratum] = (),
    guardrails: Sequence[GuardrailResult] = (),
    breaches: Sequence[str] = (),
    srm: SrmResult | None = None,
    source_errors: Sequence[str] = (),
) -> dict[str, Any]:
    total_c, total_b = Reading(now), Reading(now)
    for s in strata:
        total_c, total_b = total_c.plus(s.candidate), total_b.plus(s.baseline)
    current = strata[-1] if strata else None
    return {
        "at": now,
        "move": str(move),
        "action": decision.action,
        "rule": decision.rule,
        "reason": reason,
        "weight": record.weight,
        "elapsed_s": round(inputs.elapsed_s, 1),
        "step": {
            "index": record.step,
            "weight": record.weight,
            "elapsed_s": round(inputs.elapsed_s, 1),
            "min_step_s": inputs.min_step_s,
            "max_step_s": inputs.max_step_s,
            "min_samples": inputs.min_samples,
            "candidate": _counts(current.candidate) if current else None,
            "baseline": _counts(current.baseline) if current else None,
        },
        # Since the rollout began (the guardrails' evidence today: the strata summed).
        "candidate": _counts(total_c),
        "baseline": _counts(total_b),
        "step_requests": {
            "candidate": current.candidate.requests if current else 0,
            "baseline": current.baseline.requests if current else 0,
        },
        "strata": [
            {"index": s.index, "weight": s.weight, "candidate": _counts(s.candidate), "baseline": _counts(s.baseline)}
            for s in strata
        ],
        "guardrails": [_guardrail_json(g) for g in guardrails],
        "limits": list(breaches),
        "srm": srm.as_dict() if srm else None,
        "source_errors": list(source_errors),
    }


def judge(
    record: RolloutRecord,
    observed: Observation | ReadingUnavailable,
    now: float,
    window: Sequence[Reading] = (),
) -> Verdict:
    """Decide what a progressing rollout does now, from its record and the readings just taken."""
    policy = record.policy
    step = record.current
    if step is None:
        raise ValueError(f"rollout #{record.id} has not entered a step")

    if isinstance(observed, ReadingUnavailable):
        inputs = step_inputs(record, now, candidate_trials=0, data_ok=False)
        decision = evaluate_step(inputs)
        move = _move_of(decision, record)
        reason = (
            f"metrics unavailable: {observed}; holding until they can be read"
            if move is Move.HOLDING
            else decision.reason
        )
        evidence = _evidence(record, now, decision, move, reason, inputs, source_errors=[str(observed)])
        return Verdict(move, decision.rule, reason, evidence, tuple(window))

    readings = observed.readings
    reference = step.latest if step.latest is not None else step.counts_from
    gone = readings.requests_went_down(reference)
    rebase = None
    if gone is None:
        try:
            readings.minus(reference)
        except CountersReset as e:
            # Measured on Envoy 1.40: a cluster updated in place (its endpoints, outlier or
            # breaker settings) keeps upstream_rq_completed but starts upstream_rq_5xx and the
            # upstream_rq_time histogram again from zero. Envoy did not restart: the evidence up
            # to the last reading stands, and the step counts on from this one.
            rebase = f"{e}: the version's cluster was updated; counting on from here, evidence so far kept"
            step = step.rebased(readings)
            window = ()
    judged = dataclasses.replace(step, latest=readings)
    record = dataclasses.replace(record, steps=[*record.steps[:-1], judged])
    try:
        if gone is not None:
            raise CountersReset(gone)
        strata = record.strata(readings)
    except CountersReset as e:
        reason = (
            f"lost evidence: cannot account for the rollout's counts: {e} "
            "(envoy restarted, or the version's cluster was re-created)"
        )
        inputs = step_inputs(record, now, candidate_trials=0)
        decision = StepDecision("rollback", reason, "lost_evidence")
        evidence = _evidence(record, now, decision, Move.ROLLBACK, reason, inputs)
        return Verdict(Move.ROLLBACK, "lost_evidence", reason, evidence, (), None)

    guardrails = guardrail_results(policy, strata)
    current = strata[-1]
    if observed.source_errors:
        # App counters were left out of this reading; keeping it in the window would
        # make the next delta count them from zero.
        new_window = tuple(window)
        recent = Reading(now)
    else:
        new_window = limit_window(window, readings.candidate, judged.counts_from.candidate)
        try:
            recent = new_window[-1].minus(new_window[0])
        except CountersReset:
            recent = Reading(now)  # the strata above would have raised first
    breaches = limit_breaches(policy.limits, recent)
    srm = None
    weight = record.weight
    if policy.strategy == "canary" and 0 < weight < 100:
        srm = srm_test(
            {record.candidate: current.candidate.requests, record.baseline: current.baseline.requests},
            {record.candidate: weight / 100, record.baseline: (100 - weight) / 100},
        )
    inputs = step_inputs(
        record,
        now,
        candidate_trials=current.candidate.requests,
        guardrails=guardrails,
        limit_breaches=breaches,
        srm=srm,
        data_ok=not observed.source_errors,
    )
    decision = evaluate_step(inputs)
    move = _move_of(decision, record)
    reason = _reason(decision, guardrails)
    if decision.rule == "data_error":
        reason = "metric source errors: " + "; ".join(observed.source_errors) + "; holding until they clear"
    evidence = _evidence(
        record, now, decision, move, reason, inputs, strata, guardrails, breaches, srm, observed.source_errors
    )
    evidence["rebased"] = rebase
    return Verdict(move, decision.rule, reason, evidence, new_window, readings, tuple(strata), judged, rebase)
