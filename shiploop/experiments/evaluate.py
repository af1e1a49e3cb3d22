"""An experiment's evidence from the store -> its status: variants, lift, SRM, guardrails, decision.

The statistics are shiploop.analysis.experiment's; the guardrails are the rollout
judge's (rollout.judge.guardrail_results) on the requests Envoy logged per variant,
one stratum since the start (the split never moves during an experiment).
"""

from __future__ import annotations

import math
from typing import Any

from shiploop.analysis.experiment import (
    MIN_UNITS,
    Lift,
    UnitSums,
    Verdict,
    decide,
    estimate_lift,
    request_ratio_lift,
    sample_ratio_p,
)
from shiploop.gateway.assignment import CONTROL, TREATMENT
from shiploop.gateway.render import HISTOGRAM_BUCKETS_MS
from shiploop.rollout.core import harm_sentence
from shiploop.rollout.judge import guardrail_results
from shiploop.rollout.readings import Reading, Stratum
from shiploop.spec import ExperimentMetric, ExperimentSpec, RolloutPolicy
from shiploop.store import ArmTraffic, ExperimentRow, Store

BUCKETS_MS = HISTOGRAM_BUCKETS_MS  # the latency buckets exposures are counted in, as Envoy's histograms


def _num(x: float | None) -> float | None:
    """JSON has no NaN or infinity: not known is null."""
    return None if x is None or math.isnan(x) or math.isinf(x) else x


def spec_of(row: ExperimentRow) -> ExperimentSpec:
    return ExperimentSpec.model_validate(row.spec)


def metric_sums(store: Store, row: ExperimentRow, metric: ExperimentMetric) -> dict[str, UnitSums]:
    assert metric.event is not None
    sums = store.arm_sums(row.id, metric.event, conversion=metric.kind == "conversion")
    return {arm: UnitSums(s.units, s.x, s.xx) for arm, s in sums.items()}


def pre_period(store: Store, row: ExperimentRow) -> ExperimentRow | None:
    """Where shiploop saw this experiment's units before it started: the service's previous experiment
    with the same unit (cookie or header), whose per-unit values are in the store. None: no such one."""
    for earlier in store.experiments(row.service, limit=50):  # newest first
        if earlier.id < row.id and earlier.spec.get("unit") == row.spec.get("unit"):
            return earlier
    return None


def sums_with_pre(
    store: Store, row: ExperimentRow, metric: ExperimentMetric, pre: ExperimentRow | None
) -> tuple[dict[str, UnitSums], int]:
    """Per variant the metric's sums, with each unit's value of it in `pre` as CUPED's covariate, and how
    many units `pre` saw. Fewer than MIN_UNITS seen before: the plain sums (nothing to adjust by)."""
    plain = metric_sums(store, row, metric)
    if pre is None:
        return plain, 0
    assert metric.event is not None
    sums = store.arm_sums_with_pre(row.id, pre.id, metric.event, conversion=metric.kind == "conversion")
    seen = sum(s.seen_before for s in sums.values())
    if seen < MIN_UNITS:
        return plain, seen
    return {arm: UnitSums(s.units, s.x, s.xx, y=s.y, yy=s.yy, xy=s.xy, covariate=True) for arm, s in sums.items()}, seen


def cuped_json(pre: ExperimentRow | None, seen: int, lift: Lift, plain: Lift) -> dict[str, Any] | None:
    """What the variance reduction bought: None without a pre-period."""
    if pre is None:
        return None
    width = plain.interval[1] - plain.interval[0]
    adjusted = lift.interval[1] - lift.interval[0]
    return {
        "pre_period": f"experiment #{pre.id}",
        "units_seen_before": seen,
        "applied": lift.variance_reduction is not None,
        "variance_reduction": _num(lift.variance_reduction),
        "plain_interval": [_num(plain.interval[0]), _num(plain.interval[1])],
        "width_ratio": _num(adjusted / width) if math.isfinite(width) and width > 0 else None,
    }


def _lift_json(lift: Lift) -> dict[str, Any]:
    lo, hi = lift.interval
    return {
        "absolute": _num(lift.absolute),
        "relative": _num(lift.relative),
        "interval": [_num(lo), _num(hi)],
        "relative_interval": [_num(x) for x in lift.relative_interval] if lift.relative_interval else None,
        "chance_to_beat": _num(lift.chance_to_beat),
        "variance_reduction": _num(lift.variance_reduction),
    }


def app_metric(store: Store, row: ExperimentRow, metric: ExperimentMetric, alpha: float) -> dict[str, Any]:
    """A request-level ratio of app counters per variant, and its lift (delta method over the reading batches)."""
    sums = store.app_sums(row.id, metric.label)
    unit = {
        arm: UnitSums(b.batches, b.x, b.xx, b.d, b.dd, b.xd, ratio=True) if b else UnitSums(0, 0.0, 0.0, ratio=True)
        for arm in (CONTROL, TREATMENT)
        for b in [sums.get(arm)]
    }
    c, t = unit[CONTROL], unit[TREATMENT]
    out: dict[str, Any] = {
        "metric": metric.label,
        "level": "request",
        "measured": bool(c.d and t.d),
        "values": {CONTROL: _num(c.value), TREATMENT: _num(t.value)},
        "counts": {arm: {"numerator": s.x, "denominator": s.d, "readings": s.units} for arm, s in unit.items()},
    }
    if not out["measured"]:
        out["note"] = f"no {metric.denominator} counted on both variants yet (read from the replicas' /metrics)"
        return out
    out["lift"] = _lift_json(request_ratio_lift(c, t, alpha=alpha))
    return out


def _reading(t: ArmTraffic, now: float) -> Reading:
    cumulative = []
    total = 0
    for bound in BUCKETS_MS:
        total += t.buckets.get(float(bound), 0)
        cumulative.append((float(bound), total))
    return Reading(now, t.requests, t.errors, tuple(cumulative))


def guardrails(
    store: Store, row: ExperimentRow, spec: ExperimentSpec, now: float
) -> tuple[list[dict[str, Any]], str | None]:
    """Each guardrail's verdict as JSON, and the harm sentence of the worst one (None: no harm)."""
    policy = RolloutPolicy(guardrails=spec.guardrails, alpha=spec.alpha)
    treatment = _reading(store.arm_traffic(row.id, TREATMENT), now)
    control = _reading(store.arm_traffic(row.id, CONTROL), now)
    results = guardrail_results(policy, [Stratum(0, round(spec.allocation), treatment, control)])
    out = []
    for g in results:
        r = g.result
        verdict = "harm" if r.harmful else ("ok" if r.noninferior else "watching")
        out.append({"name": g.name, "detail": g.detail, "verdict": verdict, **r.as_dict()})
    harmful = sorted((g for g in results if g.result.harmful), key=lambda g: -g.result.log_lambda)
    return out, harm_sentence(harmful[0]) if harmful else None


def evaluate(store: Store, row: ExperimentRow, now: float) -> tuple[dict[str, Any], Verdict]:
    """The status the CLI shows (the issue's JSON shape, and more), and the decision so far."""
    spec = spec_of(row)
    primary = spec.metrics.primary
    pre = pre_period(store, row)
    sums, seen = sums_with_pre(store, row, primary, pre)
    empty = UnitSums(0, 0.0, 0.0)
    control, treatment = sums.get(CONTROL, empty), sums.get(TREATMENT, empty)
    lift = estimate_lift(control, treatment, alpha=spec.alpha, mde=spec.minimum_detectable_effect)
    plain = lift
    if control.covariate:
        c, t = (UnitSums(s.units, s.x, s.xx) for s in (control, treatment))
        plain = estimate_lift(c, t, alpha=spec.alpha, mde=spec.minimum_detectable_effect)
    assert primary.event is not None
    events = store.arm_events(row.id, primary.event)
    srm_p = sample_ratio_p(control.units, treatment.units, spec.allocation) if control.units + treatment.units else None
    guards, harm = guardrails(store, row, spec, now)
    elapsed = (row.ended_at or now) - row.started_at
    verdict = decide(
        lift,
        mde=spec.minimum_detectable_effect,
        guardrail_harm=harm,
        srm_p=srm_p,
        elapsed_s=elapsed,
        max_duration_s=spec.max_duration,
    )
    secondary = []
    for m in spec.metrics.secondary:
        if m.kind == "app_ratio":
            secondary.append(app_metric(store, row, m, spec.alpha))
            continue
        s, _ = sums_with_pre(store, row, m, pre)
        c, t = s.get(CONTROL, empty), s.get(TREATMENT, empty)
        secondary.append(
            {
                "metric": m.label,
                "level": "unit",
                "measured": True,
                "values": {CONTROL: _num(c.value), TREATMENT: _num(t.value)},
                "lift": _lift_json(estimate_lift(c, t, alpha=spec.alpha)),
            }
        )
    variants = [
        {
            "version": version,
            "track": track,
            "arm": arm,
            "units": s.units,
            "events": events.get(arm, 0),
            "value": _num(s.value),
        }
        for arm, version, track, s in (
            (CONTROL, row.control, "stable", control),
            (TREATMENT, row.treatment, "canary", treatment),
        )
    ]
    status = {
        "id": row.id,
        "service": row.service,
        "state": row.state,
        "hypothesis": row.hypothesis,
        "primary": primary.label,
        "allocation": spec.allocation,
        "minimum_detectable_effect": spec.minimum_detectable_effect,
        "started_at": row.started_at,
        "ended_at": row.ended_at,
        "elapsed_s": elapsed,
        "max_duration_s": spec.max_duration,
        "variants": variants,
        "lift": _lift_json(lift),
        "srm_p": _num(srm_p),
        "cuped": cuped_json(pre, seen, lift, plain),
        "guardrails": guards,
        "secondary": secondary,
        "decision": str(row.decision or verdict.decision) if not row.running else str(verdict.decision),
        "reason": (row.reason or verdict.reason) if not row.running else verdict.reason,
    }
    return status, verdict
