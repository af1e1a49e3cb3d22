"""One step of a rollout: from test results to advance, hold, rollback or wait.

The rules, first match wins:

1. a hard limit was breached                       -> rollback
2. any guardrail shows harm                        -> rollback
3. the traffic split does not match the weights    -> hold
4. past max_step with no usable data               -> on_no_data (hold | fail=rollback | pass=advance)
5. metric errors, too early, or too few samples    -> wait
6. noninferiority required and not yet shown       -> wait; past max_step: on_inconclusive
7. otherwise                                       -> advance

Harm is checked before anything that needs "enough" data: an anytime-valid
test may stop as soon as it crosses its boundary, and a broken candidate must
not wait for min_step. Each guardrail should be tested at alpha / k
(`per_guardrail_alpha`) so the whole rollout keeps its false-rollback rate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from shiploop.analysis.proportions import HarmResult
from shiploop.analysis.srm import SrmResult

Action = Literal["advance", "hold", "rollback", "wait"]
OnInconclusive = Literal["hold", "advance"]
OnNoData = Literal["hold", "fail", "pass"]

_NO_DATA_ACTION: dict[str, Action] = {"hold": "hold", "fail": "rollback", "pass": "advance"}


@dataclass(frozen=True)
class GuardrailResult:
    name: str
    result: HarmResult
    detail: str = ""  # e.g. "requests slower than 250 ms", shown in the reason


@dataclass(frozen=True)
class StepInputs:
    elapsed_s: float
    min_step_s: float
    max_step_s: float
    min_samples: int
    candidate_trials: int
    guardrails: Sequence[GuardrailResult] = ()
    limit_breaches: Sequence[str] = ()
    srm: SrmResult | None = None
    data_ok: bool = True
    on_inconclusive: OnInconclusive = "hold"
    on_no_data: OnNoData = "hold"
    require_noninferiority: bool = False


@dataclass(frozen=True)
class StepDecision:
    action: Action
    reason: str  # one human sentence
    rule: str  # which rule decided: limit, harm, srm, no_data, data_error, min_step, ...
    evidence: dict[str, Any] = field(default_factory=dict)  # JSON-serializable


def _pct(x: float) -> str:
    return f"{100.0 * x:.3g}%"


def _num(log_value: float) -> str:
    """exp(log_value) in a short form: 20, 1.2e3, e^812."""
    if log_value > 700.0:
        return f"e^{log_value:.0f}"
    value = math.exp(log_value)
    if value < 1000.0:
        return f"{value:.3g}"
    exponent = math.floor(math.log10(value))
    return f"{value / 10**exponent:.2g}e{exponent}"


def _label(g: GuardrailResult) -> str:
    return f"{g.name} ({g.detail})" if g.detail else g.name


def _harm_sentence(g: GuardrailResult) -> str:
    r = g.result
    return (
        f"{_label(g)}: candidate {_pct(r.candidate_rate)} vs baseline {_pct(r.baseline_rate)}, "
        f"harm bound {_pct(r.lower_bound)} > tolerance {_pct(r.tolerance)} "
        f"(Λ={_num(r.log_lambda)} ≥ {_num(r.threshold)})"
    )


def _bound_sentence(g: GuardrailResult) -> str:
    r = g.result
    return f"{_label(g)} upper bound {_pct(r.upper_bound)} ≥ tolerance {_pct(r.tolerance)}"


def _evidence(inputs: StepInputs) -> dict[str, Any]:
    return {
        "elapsed_s": inputs.elapsed_s,
        "min_step_s": inputs.min_step_s,
        "max_step_s": inputs.max_step_s,
        "min_samples": inputs.min_samples,
        "candidate_trials": inputs.candidate_trials,
        "data_ok": inputs.data_ok,
        "require_noninferiority": inputs.require_noninferiority,
        "on_inconclusive": inputs.on_inconclusive,
        "on_no_data": inputs.on_no_data,
        "limit_breaches": list(inputs.limit_breaches),
        "guardrails": {g.name: g.result.as_dict() | {"detail": g.detail} for g in inputs.guardrails},
        "srm": inputs.srm.as_dict() if inputs.srm is not None else None,
    }


def evaluate_step(inputs: StepInputs) -> StepDecision:
    evidence = _evidence(inputs)

    def decide(action: Action, rule: str, reason: str) -> StepDecision:
        return StepDecision(action, reason, rule, evidence | {"action": action, "rule": rule})

    if inputs.limit_breaches:
        return decide("rollback", "limit", "limit breached: " + "; ".join(inputs.limit_breaches))

    harmful = sorted((g for g in inputs.guardrails if g.result.harmful), key=lambda g: -g.result.log_lambda)
    if harmful:
        more = f" (and {len(harmful) - 1} more guardrail(s))" if len(harmful) > 1 else ""
        return decide("rollback", "harm", _harm_sentence(harmful[0]) + more)

    srm = inputs.srm
    if srm is not None and srm.mismatch:
        split = ", ".join(f"{k} {v}" for k, v in srm.observed.items())
        return decide(
            "hold",
            "srm",
            f"sample ratio mismatch: observed {split} "
            f"(Bayes factor {_num(srm.log_bayes_factor)} ≥ 1/α, χ²={srm.chi2:.3g})",
        )

    past_max = inputs.elapsed_s >= inputs.max_step_s
    short = inputs.candidate_trials < inputs.min_samples
    if past_max and (not inputs.data_ok or short):
        why = (
            "metric source errors"
            if not inputs.data_ok
            else f"only {inputs.candidate_trials} of {inputs.min_samples} candidate requests"
        )
        return decide(
            _NO_DATA_ACTION[inputs.on_no_data],
            "no_data",
            f"no usable data after {inputs.elapsed_s:.0f} s ({why}); on_no_data={inputs.on_no_data}",
        )
    if not inputs.data_ok:
        return decide("wait", "data_error", "metric source errors; waiting for good data")
    if inputs.elapsed_s < inputs.min_step_s:
        return decide("wait", "min_step", f"no harm so far; {inputs.elapsed_s:.0f} of {inputs.min_step_s:.0f} s")
    if short:
        return decide(
            "wait",
            "min_samples",
            f"no harm so far; {inputs.candidate_trials} of {inputs.min_samples} candidate requests",
        )

    if inputs.require_noninferiority:
        pending = [g for g in inputs.guardrails if not g.result.noninferior]
        if pending:
            bounds = "; ".join(_bound_sentence(g) for g in pending)
            if past_max:
                return decide(
                    "advance" if inputs.on_inconclusive == "advance" else "hold",
                    "inconclusive",
                    f"inconclusive after {inputs.elapsed_s:.0f} s: {bounds}; on_inconclusive={inputs.on_inconclusive}",
                )
            return decide("wait", "noninferiority", f"not yet shown noninferior: {bounds}")

    n = len(inputs.guardrails)
    shown = "shown below tolerance" if inputs.require_noninferiority else "showing no harm"
    return decide(
        "advance",
        "pass",
        f"{n} guardrail(s) {shown} after {inputs.elapsed_s:.0f} s and {inputs.candidate_trials} candidate requests",
    )
