"""Anytime-valid harm test on a difference of two proportions, stratified by step.

A rollout moves the traffic split step by step (5 -> 25 -> 50%), and the rates
of both versions move with the world (a shared dependency fails for a minute).
Pooling counts since the rollout began then weights time differently in the two
arms, and a shared incident looks like a difference (Simpson's paradox; in an
A/A simulation a 60 s 0.1% -> 2% incident on both arms rolled back 40% of
identical candidates). So each step, where the weights stayed constant, is a
stratum of its own: within it both arms see the same moments in the same
proportion, and d̂_k = p̂_c,k - p̂_b,k is unbiased for the difference whatever
the rates did over time. The strata combine as independent Gaussian evidence:

    S(δ0) = Σ I_k (d̂_k - δ0),   I = Σ I_k,   I_k = 1 / V_k

and S ~ N((δ - δ0) I, I). The harm test rejects δ ≤ tolerance when the
one-sided normal mixture on (S, I) (shiploop.analysis.mixture) reaches 1/α, the
mSPRT of Johari, Pekelis and Walsh, "Always valid inference", restricted to the
harmful side. A stratum where an arm had no traffic (the 100% step: no
concurrent baseline) carries no information and is left out by construction.
"""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from shiploop.analysis.mixture import boundary, log_mixture
from shiploop.analysis.srm import gamma_q

# Below this many trials in either arm the data are "not enough" to advance on.
# The test itself stays valid at any n thanks to the conservative variance.
MIN_TRIALS = 30

# τ is the scale of harm (beyond the tolerance) the mixture is tuned for. One
# percentage point is the smallest jump in an error or slow-request rate that is
# worth a rollback at the rates HTTP services run at, and at the 1-100 rps a
# canary sees it gives detection in seconds for a broken candidate and within a
# couple of minutes for a 0.1% -> 1% regression (see docs/analysis.md).
MIN_TAU = 0.01

# A second mixture component for gross regressions. With τ = 1 point alone, a
# candidate failing 20% of requests at 5 rps needs about 40 s to be caught:
# the normal mixture puts almost no weight on effects that large. The average
# of two likelihood ratios is still a martingale under the null, so the
# two-component mixture keeps the anytime guarantee and costs at most a factor
# of 2 (log 2 on the log scale) against whichever component fits better;
# measured: 20% errors at 5 rps caught in about 12 s instead of 40 s.
LARGE_TAU = 0.2

# The explicit small-count guard: no harm is declared on fewer candidate
# requests than this, whatever the statistic says. Three failures out of three
# is suggestive, not proof; a fully broken candidate reaches ten requests in
# two seconds at 5 rps.
MIN_HARM_TRIALS = 10


@dataclass(frozen=True)
class Counts:
    """`events` (errors, slow requests, ...) out of `trials` requests."""

    events: int
    trials: int

    def __post_init__(self) -> None:
        if self.trials < 0 or self.events < 0 or self.events > self.trials:
            raise ValueError(f"invalid counts: {self.events} events of {self.trials} trials")

    @property
    def rate(self) -> float:
        return self.events / self.trials if self.trials else 0.0


@dataclass(frozen=True)
class HarmResult:
    candidate: Counts
    baseline: Counts
    tolerance: float
    alpha: float
    tau2: float  # the first (tolerance-sized) mixture component
    estimate: float  # Σ I_k d̂_k / I: the strata's p̂_c - p̂_b, weighted by their information
    upper_bound: float  # one-sided anytime-valid bound on p_c - p_b at level 1 - alpha (few-event safe)
    lower_bound: float  # the harm side's bound: harmful <=> lower_bound > tolerance
    log_lambda: float  # log Λ of the one-sided mixture at δ0 = tolerance
    threshold: float  # log(1/alpha)
    harmful: bool  # p_c - p_b > tolerance, shown with anytime-valid error <= alpha
    noninferior: bool  # upper_bound < tolerance
    enough_data: bool  # both arms have at least MIN_TRIALS trials
    mixture: tuple[float, ...] = ()  # every mixture component's τ²
    information: float = 0.0  # I = Σ 1/V_k over the strata with both arms served
    strata: int = 0  # how many strata carried evidence

    @property
    def candidate_rate(self) -> float:
        return self.candidate.rate

    @property
    def baseline_rate(self) -> float:
        return self.baseline.rate

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready evidence (all floats finite)."""
        return {
            "candidate": {"events": self.candidate.events, "trials": self.candidate.trials},
            "baseline": {"events": self.baseline.events, "trials": self.baseline.trials},
            "candidate_rate": self.candidate_rate,
            "baseline_rate": self.baseline_rate,
            "tolerance": self.tolerance,
            "alpha": self.alpha,
            "tau2": self.tau2,
            "estimate": self.estimate,
            "upper_bound": self.upper_bound,
            "lower_bound": self.lower_bound,
            "log_lambda": self.log_lambda,
            "threshold": self.threshold,
            "harmful": self.harmful,
            "noninferior": self.noninferior,
            "enough_data": self.enough_data,
            "information": self.information,
            "strata": self.strata,
        }


def default_tau2(tolerance: float) -> float:
    """Mixture variance: τ = max(tolerance, 1 point), the smallest harm worth catching.

    An excess as large as the tolerance itself (twice the degradation we agreed
    to accept) is worth catching; below one percentage point the mixture would
    put its weight on effects too small to matter and slow down the detection
    of the large ones that do.
    """
    return max(abs(tolerance), MIN_TAU) ** 2


def per_guardrail_alpha(alpha: float, guardrails: int) -> float:
    """Bonferroni split of the rollout's alpha over its guardrails.

    Each mSPRT is valid over all time, so looking every second at every step
    costs nothing more; only the number of guardrails divides the budget.
    """
    return alpha / max(guardrails, 1)


def stratum_terms(x_c: Any, n_c: Any, x_b: Any, n_b: Any, variance: Any = None) -> tuple[Any, Any]:
    """(d̂_k, I_k) of strata given as numbers or arrays; I_k = 0 where an arm had no trials.

    `variance(events, trials)` is the per-arm variance, conservative_variance
    unless given (arrays allowed).
    """
    var = variance or conservative_variance
    x_c, n_c, x_b, n_b = (np.asarray(a, dtype=float) for a in (x_c, n_c, x_b, n_b))
    served = (n_c > 0) & (n_b > 0)
    one_c, one_b = np.maximum(n_c, 1.0), np.maximum(n_b, 1.0)
    diff = np.where(served, x_c / one_c - x_b / one_b, 0.0)
    v = var(x_c, one_c) + var(x_b, one_b)
    return diff, np.where(served, 1.0 / v, 0.0)


def conservative_variance(events: Any, trials: Any) -> Any:
    """Var(p̂) with p̃ = (x+1)/(n+2) in place of p̂.

    p̃ lies between p̂ and 1/2, so p̃(1-p̃)/n ≥ p̂(1-p̂)/n always: never zero (no
    failures yet, or all failures), inflated where counts are small and the
    normal approximation is weakest, and equal to the usual plug-in as n grows.
    This is what keeps one early error (1 of 3) from rolling anything back.
    Within a stratum whose rate moved over time (an incident), a sum of
    Bernoullis with varying p has variance at most n p̄ (1 - p̄): still conservative.
    """
    p = (np.asarray(events, dtype=float) + 1.0) / (np.asarray(trials, dtype=float) + 2.0)
    return p * (1.0 - p) / trials


@functools.lru_cache(maxsize=4096)
def poisson_upper(events: int, alpha: float) -> float:
    """The exact one-sided upper (1 - α) bound on a Poisson mean seen as `events`.

    λ with P(X ≤ events | λ) = α, i.e. Q(events + 1, λ) = α (regularized upper
    gamma). Above 200 events the Wilson-Hilferty cube-root approximation is
    within 0.1% of it and costs nothing.
    """
    if events > 200:
        k = events + 1.0
        z = statistics.NormalDist().inv_cdf(1.0 - alpha)
        return k * (1.0 - 1.0 / (9.0 * k) + z / (3.0 * math.sqrt(k))) ** 3
    lo, hi = float(events), float(events) + 10.0 + 10.0 * math.sqrt(events + 1.0)
    for _ in range(100):
        mid = (lo + hi) / 2
        if gamma_q(events + 1.0, mid) > alpha:
            lo = mid
        else:
            hi = mid
    return hi


def _few_event_variance(alpha: float) -> Any:
    """Per-arm variance with the rate at its exact Poisson upper bound, for the noninferiority side.

    With few events the plug-in variance is small exactly when the rate is least
    known: 5 errors in 2,982 requests put the normal bound at +0.0037 where an
    exact sequence gives +0.0048, and "noninferior" was reached falsely in 4.8%
    of simulated runs at the boundary. The Poisson upper bound of the rate widens
    the variance where events are few and vanishes as they grow (+2/√x relative).
    """

    def variance(events: Any, trials: Any) -> Any:
        ev = np.atleast_1d(np.asarray(events, dtype=float))
        ups = np.array([poisson_upper(int(e), alpha) for e in ev.ravel()]).reshape(ev.shape)
        p = np.minimum(np.maximum(ups / trials, (ev + 1.0) / (trials + 2.0)), 0.5)
        out = p * (1.0 - p) / trials
        return out if np.ndim(events) else out[0]

    return variance


def mixture_of(tolerance: float, tau2: float | tuple[float, ...] | None) -> tuple[float, ...]:
    """The mixture components: by default the tolerance-sized one and LARGE_TAU for gross harm."""
    if tau2 is None:
        small = default_tau2(tolerance)
        return (small, LARGE_TAU**2) if small < LARGE_TAU**2 else (small,)
    tau2s = tau2 if isinstance(tau2, tuple) else (tau2,)
    if not tau2s or min(tau2s) <= 0.0:
        raise ValueError(f"tau2 must be positive, got {tau2}")
    return tau2s


def stratified_harm_test(
    strata: Sequence[tuple[Counts, Counts]],
    tolerance: float,
    alpha: float,
    tau2: float | tuple[float, ...] | None = None,
    *,
    bounds: bool = True,
) -> HarmResult:
    """Is the candidate's rate worse than the baseline's by more than `tolerance`?

    `strata` are (candidate, baseline) counts per step, each over a time in which
    the weights stayed constant (the last one may still be growing). Call it as
    often as you like: the answer is anytime-valid at level alpha.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    tau2s = mixture_of(tolerance, tau2)
    used = [(c, b) for c, b in strata if c.trials > 0 and b.trials > 0]
    candidate = Counts(sum(c.events for c, _ in used), sum(c.trials for c, _ in used))
    baseline = Counts(sum(b.events for _, b in used), sum(b.trials for _, b in used))
    threshold = math.log(1.0 / alpha)
    enough = candidate.trials >= MIN_TRIALS and baseline.trials >= MIN_TRIALS
    if not used:
        # No stratum with both arms served: no statistic, the whole interval, no verdict.
        return HarmResult(
            candidate, baseline, tolerance, alpha, tau2s[0], 0.0, 1.0, -1.0, 0.0, threshold,
            harmful=False, noninferior=False, enough_data=False, mixture=tau2s,
        )  # fmt: skip
    arrays = [
        [c.events for c, _ in used],
        [c.trials for c, _ in used],
        [b.events for _, b in used],
        [b.trials for _, b in used],
    ]
    diff, info = stratum_terms(arrays[0], arrays[1], arrays[2], arrays[3])
    total_info = float(info.sum())
    estimate = float((info * diff).sum()) / total_info
    log_lam = float(log_mixture(total_info * (estimate - tolerance), total_info, tau2s))
    if bounds:
        lower = max(-1.0, estimate - boundary(total_info, tau2s, alpha) / total_info)
        # The noninferiority side: the same mixture mirrored, with few-event-safe variances.
        diff_u, info_u = stratum_terms(arrays[0], arrays[1], arrays[2], arrays[3], _few_event_variance(alpha))
        total_u = float(info_u.sum())
        estimate_u = float((info_u * diff_u).sum()) / total_u
        upper = min(1.0, estimate_u + boundary(total_u, tau2s, alpha) / total_u)
    else:
        # Simulations that only want the verdict skip the bisections: the trivial interval.
        lower, upper = -1.0, 1.0
    return HarmResult(
        candidate,
        baseline,
        tolerance,
        alpha,
        tau2s[0],
        estimate,
        upper,
        lower,
        log_lam,
        threshold,
        harmful=log_lam >= threshold and candidate.trials >= MIN_HARM_TRIALS,
        noninferior=upper < tolerance,
        enough_data=enough,
        mixture=tau2s,
        information=total_info,
        strata=len(used),
    )


def harm_test(
    candidate: Counts,
    baseline: Counts,
    tolerance: float,
    alpha: float,
    tau2: float | tuple[float, ...] | None = None,
    *,
    bounds: bool = True,
) -> HarmResult:
    """The harm test on one stratum: counts over a time the weights stayed constant."""
    return stratified_harm_test([(candidate, baseline)], tolerance, alpha, tau2, bounds=bounds)
