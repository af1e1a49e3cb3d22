"""A rollout policy applied to the evidence of candidate and baseline: guardrails and limits.

Guardrails compare the two versions within each step (a stratum: the weights
stayed constant) and combine the steps (shiploop.analysis.stratified_harm_test),
so a change of rates that both versions share, while the split moves, does not
look like a difference. A step where the candidate has all the traffic (100%)
has no concurrent baseline and gives the guardrails no evidence; there only the
limits, ceilings on the candidate alone, judge.
"""

from __future__ import annotations

from collections.abc import Sequence

from shiploop.analysis import (
    Counts,
    GuardrailResult,
    bucket_quantile,
    latency_exceedance,
    per_guardrail_alpha,
    stratified_harm_test,
)
from shiploop.rollout.readings import Reading, Stratum
from shiploop.spec import Guardrail, Limit, RolloutPolicy


def _app_counts(r: Reading, numerator: str, denominator: str) -> Counts:
    num = int(round(r.app.get(numerator, 0.0)))
    den = int(round(r.app.get(denominator, 0.0)))
    return Counts(min(num, den), den)


def concurrent(strata: Sequence[Stratum]) -> list[Stratum]:
    """The strata in which the baseline served beside the candidate (not the 100% step)."""
    return [s for s in strata if s.weight < 100]


def guardrail_results(policy: RolloutPolicy, strata: Sequence[Stratum]) -> list[GuardrailResult]:
    """Each guardrail as an anytime-valid stratified harm test; alpha is split across them (Bonferroni)."""
    alpha = per_guardrail_alpha(policy.alpha, max(1, len(policy.guardrails)))
    live = concurrent(strata)
    out = []
    for g in policy.guardrails:
        name, detail, pairs = _guardrail_counts(g, live)
        out.append(GuardrailResult(name, stratified_harm_test(pairs, g.tolerance, alpha), detail))
    return out


def latency_thresholds(strata: Sequence[Stratum], quantile: float) -> list[float | None]:
    """The slow threshold of each stratum, frozen: the baseline's quantile in the step before.

    The first step has no step before; its threshold is its own baseline's
    quantile so far (the one threshold that still moves, for the first step only).
    """
    out: list[float | None] = []
    previous: float | None = None
    for s in strata:
        own = bucket_quantile(s.baseline.buckets, quantile)
        out.append(previous if previous is not None else own)
        previous = own if own is not None else previous
    return out


def _guardrail_counts(g: Guardrail, strata: Sequence[Stratum]) -> tuple[str, str, list[tuple[Counts, Counts]]]:
    if g.kind == "error_rate":
        pairs = [
            (Counts(s.candidate.errors, s.candidate.requests), Counts(s.baseline.errors, s.baseline.requests))
            for s in strata
        ]
        return "error_rate", "", pairs
    if g.kind == "latency":
        q = g.quantile or 0.95
        relative = g.relative or 0.0
        pairs = []
        threshold: float | None = None
        for s, frozen in zip(strata, latency_thresholds(strata, q), strict=True):
            threshold, slow_c, slow_b = latency_exceedance(
                s.baseline.buckets,
                s.candidate.buckets,
                q,
                baseline_total=s.baseline.requests,
                candidate_total=s.candidate.requests,
                threshold_ms=frozen,
                relative=relative,
            )
            pairs.append((slow_c, slow_b))
        label = f"share slower than baseline p{q * 100:g}"
        if relative:
            label += f" (candidate: {1 + relative:g}x)"
        detail = f"{label} ({threshold:g} ms)" if threshold is not None else ""
        return f"latency_p{q * 100:g}", detail, pairs
    assert g.numerator and g.denominator
    pairs = [
        (_app_counts(s.candidate, g.numerator, g.denominator), _app_counts(s.baseline, g.numerator, g.denominator))
        for s in strata
    ]
    return g.metric, "", pairs


def limit_breaches(limits: list[Limit], window: Reading, min_requests: int = 20) -> list[str]:
    """Hard ceilings on the candidate alone over the recent window; no statistics, at every step.

    At least `min_requests` in the window: with 10, three unlucky failures in
    fourteen requests of an 8%-error version broke a 20% limit (seen in the demo).
    """
    breaches: list[str] = []
    if window.requests < min_requests:
        return breaches
    for lim in limits:
        if lim.kind == "error_rate":
            rate = window.errors / window.requests
            if rate > lim.max:
                breaches.append(f"error_rate {rate:.1%} over the last {window.requests} requests > limit {lim.max:.1%}")
        elif lim.kind == "latency":
            q = lim.quantile or 0.99
            value_ms = bucket_quantile(window.buckets, q)
            if value_ms is not None and value_ms > lim.max * 1000:
                breaches.append(f"latency p{q * 100:g} {value_ms:g} ms > limit {lim.max * 1000:g} ms")
        elif lim.numerator and lim.denominator:
            c = _app_counts(window, lim.numerator, lim.denominator)
            if c.trials >= min_requests and c.events / c.trials > lim.max:
                breaches.append(f"{lim.metric} {c.events / c.trials:.1%} > limit {lim.max:.1%}")
    return breaches
