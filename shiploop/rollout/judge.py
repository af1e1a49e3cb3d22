"""A rollout policy applied to the deltas of candidate and baseline: guardrails and limits.

`guardrail_results` takes the evidence step by step (strata): the weights
change between steps, so a statistic that stratifies by step can replace the
plain sum here without any caller changing.
"""

from __future__ import annotations

from collections.abc import Sequence

from shiploop.analysis import (
    Counts,
    GuardrailResult,
    bucket_quantile,
    harm_test,
    latency_exceedance,
    per_guardrail_alpha,
)
from shiploop.rollout.readings import Reading, Stratum
from shiploop.spec import Guardrail, Limit, RolloutPolicy


def _app_counts(r: Reading, numerator: str, denominator: str) -> Counts:
    num = int(round(r.app.get(numerator, 0.0)))
    den = int(round(r.app.get(denominator, 0.0)))
    return Counts(min(num, den), den)


def guardrail_results(policy: RolloutPolicy, strata: Sequence[Stratum]) -> list[GuardrailResult]:
    """Each guardrail as an anytime-valid harm test; alpha is split across them (Bonferroni).

    For now the strata are summed: the counts since the rollout began.
    """
    candidate, baseline = Reading(0.0), Reading(0.0)
    for s in strata:
        candidate, baseline = candidate.plus(s.candidate), baseline.plus(s.baseline)
    alpha = per_guardrail_alpha(policy.alpha, max(1, len(policy.guardrails)))
    out = []
    for g in policy.guardrails:
        name, detail, cand, base = _guardrail_counts(g, candidate, baseline)
        out.append(GuardrailResult(name, harm_test(cand, base, g.tolerance, alpha), detail))
    return out


def _guardrail_counts(g: Guardrail, candidate: Reading, baseline: Reading) -> tuple[str, str, Counts, Counts]:
    if g.kind == "error_rate":
        return (
            "error_rate",
            "",
            Counts(candidate.errors, candidate.requests),
            Counts(baseline.errors, baseline.requests),
        )
    if g.kind == "latency":
        q = g.quantile or 0.95
        threshold, slow_c, slow_b = latency_exceedance(baseline.buckets, candidate.buckets, q)
        detail = f"share slower than baseline p{q * 100:g} ({threshold:g} ms)" if threshold is not None else ""
        return (f"latency_p{q * 100:g}", detail, slow_c, slow_b)
    assert g.numerator and g.denominator
    return (
        g.metric,
        "",
        _app_counts(candidate, g.numerator, g.denominator),
        _app_counts(baseline, g.numerator, g.denominator),
    )


def limit_breaches(limits: list[Limit], window: Reading, min_requests: int = 20) -> list[str]:
    """Hard ceilings on the candidate alone over the recent window; no statistics.

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
