"""Statistics for progressive delivery, as pure functions: counts in, decisions and evidence out.

No I/O and no clocks: the caller passes counts and elapsed time. See docs/analysis.md.
"""

from shiploop.analysis.fixed_threshold import FixedDecision, FixedThresholdPolicy, IntervalStats
from shiploop.analysis.latency import Buckets, bucket_quantile, latency_exceedance
from shiploop.analysis.proportions import (
    MIN_TRIALS,
    Counts,
    HarmResult,
    default_tau2,
    harm_test,
    per_guardrail_alpha,
)
from shiploop.analysis.simulation import binomial, simulate_rollout
from shiploop.analysis.srm import SRM_P_VALUE, SrmResult, chi2_sf, srm_test
from shiploop.analysis.step import GuardrailResult, StepDecision, StepInputs, evaluate_step

__all__ = [
    "MIN_TRIALS",
    "SRM_P_VALUE",
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
    "binomial",
    "bucket_quantile",
    "chi2_sf",
    "default_tau2",
    "evaluate_step",
    "harm_test",
    "latency_exceedance",
    "per_guardrail_alpha",
    "simulate_rollout",
    "srm_test",
]
