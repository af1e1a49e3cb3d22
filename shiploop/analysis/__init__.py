"""Statistics for progressive delivery, as pure functions: counts in, decisions and evidence out.

No I/O and no clocks: the caller passes counts and elapsed time. See docs/analysis.md.
"""

from shiploop.analysis.fixed_threshold import FixedDecision, FixedThresholdPolicy, IntervalStats
from shiploop.analysis.latency import Buckets, bucket_quantile, latency_exceedance
from shiploop.analysis.mixture import boundary, log_mixture, log_one_sided
from shiploop.analysis.proportions import (
    MIN_TRIALS,
    Counts,
    HarmResult,
    default_tau2,
    harm_test,
    per_guardrail_alpha,
    poisson_upper,
    stratified_harm_test,
    stratum_terms,
)
from shiploop.analysis.srm import SRM_ALPHA, SrmResult, chi2_sf, srm_test
from shiploop.analysis.step import GuardrailResult, StepDecision, StepInputs, evaluate_step

__all__ = [
    "MIN_TRIALS",
    "SRM_ALPHA",
    "Buckets",
    "Counts",
    "FixedDecision",
    "FixedThresholdPolicy",
    "GuardrailResult",
    "HarmResult",
    "IntervalStats",
    "StepDecision",
    "StepInputs",
    "SrmResult",
    "boundary",
    "bucket_quantile",
    "chi2_sf",
    "default_tau2",
    "evaluate_step",
    "harm_test",
    "latency_exceedance",
    "log_mixture",
    "log_one_sided",
    "per_guardrail_alpha",
    "poisson_upper",
    "srm_test",
    "stratified_harm_test",
    "stratum_terms",
]
