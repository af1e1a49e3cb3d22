"""Simulated canary rollouts, thousands at once: false rollbacks, power and speed of the judge.

Every simulated second, `rps` requests are split at random between the arms
with the step's weight (as Envoy's weighted clusters do); each fails with its
arm's error rate at that moment, and its latency (lognormal, in whole
milliseconds as Envoy records it) falls into the histogram's buckets. A shared
incident changes both arms' rates for a while. The judge's rules are applied
to all runs at once with the very primitives the rollout judge calls
(`stratum_terms`, `log_mixture`, the SRM Bayes factor, the latency threshold
of the step before) and evaluate_step's order of rules; tests replay traced
runs through the controller's own judge and require the same outcome, second
for second.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shiploop.analysis.mixture import log_mixture
from shiploop.analysis.proportions import MIN_HARM_TRIALS, mixture_of, per_guardrail_alpha, stratum_terms
from shiploop.analysis.srm import SRM_ALPHA, SRM_CONCENTRATION
from shiploop.spec import RolloutPolicy

LIMIT_WINDOW_S = 10  # as rollout.core.LIMIT_WINDOW_S (analysis may not import rollout)
LIMIT_MIN_REQUESTS = 20  # as rollout.judge.limit_breaches
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def lgamma(x: np.ndarray) -> np.ndarray:
    """log Γ(x) for x > 0, vectorised: Stirling's series at x + 6 (error < 1e-12), shifted back."""
    y = x + 6.0
    series = 1.0 / (12.0 * y) - 1.0 / (360.0 * y**3) + 1.0 / (1260.0 * y**5) - 1.0 / (1680.0 * y**7)
    shift = np.log(x * (x + 1.0) * (x + 2.0) * (x + 3.0) * (x + 4.0) * (x + 5.0))
    return (y - 0.5) * np.log(y) - y + _HALF_LOG_2PI + series - shift


@dataclass(frozen=True)
class Incident:
    """Both arms' error rate (and latency factor) change for `duration_s` from `start_s` on."""

    start_s: float
    duration_s: float
    error: float | None = None  # the error rate during the incident (None: unchanged)
    latency_factor: float = 1.0


@dataclass(frozen=True)
class World:
    rps: int = 100
    base_error: float = 0.001
    candidate_error: float | None = None  # None: same as the baseline (A/A)
    candidate_latency_factor: float = 1.0
    latency_median_ms: float = 3.0
    latency_sigma: float = 0.6
    # Requests the router sends to the candidate, as a share of the configured weight
    # (1.0: routing works; 0.9: a sample-ratio mismatch).
    routing_factor: float = 1.0
    # Incidents start at a time drawn per run, uniformly in [0, incident_window_s).
    incident: Incident | None = None
    incident_window_s: float = 0.0


@dataclass
class SimResult:
    outcome: np.ndarray  # per run: "rolled_back" | "promoted" | "held" | "undecided"
    t_s: np.ndarray  # when the run ended (or the horizon)
    rule: np.ndarray  # the deciding rule: harm, limit, pass, no_data, ...
    weight_at_end: np.ndarray  # the candidate's weight when the run ended
    srm_held_s: np.ndarray  # seconds spent holding on a sample-ratio mismatch
    trace: dict[str, np.ndarray] = field(default_factory=dict)  # per-second arrivals of the first runs

    def share(self, outcome: str) -> float:
        return float(np.mean(self.outcome == outcome))


def bucket_probabilities(bounds: Sequence[float], median_ms: float, sigma: float, factor: float) -> np.ndarray:
    """P(a request lands in each bucket), the last entry being above the largest bound.

    Envoy records upstream_rq_time in whole milliseconds (truncated), so a
    request is at or below bound b when its latency is below floor(b) + 1.
    """
    edges = np.floor(np.asarray(bounds, dtype=float)) + 1.0
    z = np.log(edges / (median_ms * factor)) / sigma
    cum = np.array([0.5 * math.erfc(-x / math.sqrt(2.0)) for x in z])
    probs = np.diff(np.concatenate([[0.0], cum, [1.0]]))
    return np.maximum(probs, 0.0) / np.maximum(probs, 0.0).sum()


def _quantile_index(cum: np.ndarray, q: float) -> np.ndarray:
    """Per run, the first bucket whose cumulative count reaches q of the last finite bound's (bucket_quantile)."""
    total = cum[:, -1:]
    reached = cum >= q * total
    idx = np.argmax(reached, axis=1)
    return np.where(total[:, 0] > 0, idx, -1)


class _Guardrail:
    """One guardrail's stratified evidence for every run."""

    def __init__(self, runs: int, tolerance: float, alpha: float) -> None:
        self.tolerance = tolerance
        self.alpha = alpha
        self.tau2s = mixture_of(tolerance, None)
        self.s_done = np.zeros(runs)
        self.i_done = np.zeros(runs)
        self.trials_done = np.zeros(runs)

    def harmful(self, x_c: Any, n_c: Any, x_b: Any, n_b: Any, live: np.ndarray) -> tuple[np.ndarray, Any, Any]:
        """(harmful, S of the current stratum, I of the current stratum)."""
        diff, info = stratum_terms(x_c, n_c, x_b, n_b)
        info = np.where(live, info, 0.0)
        s_cur = info * (diff - self.tolerance)
        s, i = self.s_done + s_cur, self.i_done + info
        trials = self.trials_done + np.where(live & (info > 0), n_c, 0)
        # A one-sided mixture cannot reach 1/α (> 1) at S ≤ 0: look only where S > 0.
        out = np.zeros(len(s), dtype=bool)
        look = (s > 0) & (i > 0) & (trials >= MIN_HARM_TRIALS)
        if look.any():
            out[look] = np.asarray(log_mixture(s[look], i[look], self.tau2s)) >= math.log(1.0 / self.alpha)
        return out, s_cur, info

    def close(self, done: np.ndarray, s_cur: Any, info: Any, n_c: Any) -> None:
        self.s_done = np.where(done, self.s_done + s_cur, self.s_done)
        self.i_done = np.where(done, self.i_done + info, self.i_done)
        self.trials_done = np.where(done & (info > 0), self.trials_done + n_c, self.trials_done)


def _srm_mismatch(n_c: np.ndarray, n_b: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """The sequential multinomial test of srm.srm_test, for two arms, per run."""
    live = (weight > 0) & (weight < 100) & (n_c + n_b > 0)
    out = np.zeros(len(n_c), dtype=bool)
    if not live.any():
        return out
    nc, nb, w = n_c[live].astype(float), n_b[live].astype(float), weight[live] / 100.0
    k = SRM_CONCENTRATION
    a_c, a_b = k * w, k * (1.0 - w)
    log_bf = (
        math.lgamma(k)
        - lgamma(k + nc + nb)
        + lgamma(a_c + nc)
        - lgamma(a_c)
        + lgamma(a_b + nb)
        - lgamma(a_b)
        - nc * np.log(w)
        - nb * np.log(1.0 - w)
    )
    out[live] = log_bf >= math.log(1.0 / SRM_ALPHA)
    return out


def simulate(
    policy: RolloutPolicy,
    world: World,
    runs: int,
    seed: int,
    bounds: Sequence[float],
    horizon_s: int = 1800,
    trace_runs: int = 0,
) -> SimResult:
    """Run `runs` rollouts of `policy` in `world`, the judge's rules every simulated second."""
    if policy.strategy != "canary" or policy.require_noninferiority:
        raise ValueError("the simulation covers canary rollouts without require_noninferiority")
    rng = np.random.default_rng(seed)
    steps = np.asarray(policy.steps, dtype=float)
    k = max(1, len(policy.guardrails))
    alpha = per_guardrail_alpha(policy.alpha, k)
    errors_g = [_Guardrail(runs, g.tolerance, alpha) for g in policy.guardrails if g.kind == "error_rate"]
    latency_specs = [g for g in policy.guardrails if g.kind == "latency"]
    if len(errors_g) + len(latency_specs) != len(policy.guardrails) or len(latency_specs) > 1:
        raise ValueError("the simulation covers error_rate guardrails and at most one latency guardrail")
    latency_g = [_Guardrail(runs, g.tolerance, alpha) for g in latency_specs]
    q = (latency_specs[0].quantile or 0.95) if latency_specs else 0.95
    relative = (latency_specs[0].relative or 0.0) if latency_specs else 0.0
    bound_arr = np.asarray(bounds, dtype=float)
    nb_ = len(bound_arr) + 1
    normal = bucket_probabilities(bounds, world.latency_median_ms, world.latency_sigma, 1.0)
    slow_incident = (
        bucket_probabilities(bounds, world.latency_median_ms, world.latency_sigma, world.incident.latency_factor)
        if world.incident
        else normal
    )
    cand_normal = bucket_probabilities(
        bounds, world.latency_median_ms, world.latency_sigma, world.candidate_latency_factor
    )
    # Buckets no scenario reaches with a chance above 1e-12 are left out of the draws.
    used = np.flatnonzero(np.maximum.reduce([normal, slow_incident, cand_normal]) > 1e-12)
    p_error_limit = next((lim.max for lim in policy.limits if lim.kind == "error_rate"), None)

    incident_start = rng.uniform(0.0, world.incident_window_s, runs) if world.incident else np.full(runs, np.inf)
    incident_end = incident_start + (world.incident.duration_s if world.incident else 0.0)
    p_c_base = world.base_error if world.candidate_error is None else world.candidate_error

    step = np.zeros(runs, dtype=int)
    step_started: np.ndarray[Any, Any] = np.zeros(runs)
    alive = np.ones(runs, dtype=bool)
    outcome = np.full(runs, "undecided", dtype=object)
    rule = np.full(runs, "", dtype=object)
    t_end = np.full(runs, horizon_s, dtype=int)
    weight_end = np.zeros(runs)
    srm_held = np.zeros(runs)
    # The current stratum's counts, and the candidate's last seconds for the limits.
    cur = {name: np.zeros(runs) for name in ("n_c", "x_c", "n_b", "x_b")}
    bins_c = np.zeros((runs, nb_))
    bins_b = np.zeros((runs, nb_))
    prev_threshold = np.full(runs, -1)  # bucket index of the step before's baseline quantile
    window = np.zeros((LIMIT_WINDOW_S, 2, runs))
    traced: dict[str, list[np.ndarray]] = {n: [] for n in ("n_c", "x_c", "n_b", "x_b", "bins_c", "bins_b")}

    for t in range(1, horizon_s + 1):
        if not alive.any():
            break
        weight = steps[step]
        share = np.minimum(1.0, weight / 100.0 * world.routing_factor)
        n_c = rng.binomial(world.rps, share)
        n_b = world.rps - n_c
        during = (t - 1 >= incident_start) & (t - 1 < incident_end)
        p_b = np.full(runs, world.base_error)
        p_c = np.full(runs, p_c_base)
        if world.incident and world.incident.error is not None:
            # A shared dependency fails: both arms at the incident's rate (a bad candidate no better).
            p_b = np.where(during, world.incident.error, p_b)
            p_c = np.where(during, np.maximum(world.incident.error, p_c), p_c)
        x_c = rng.binomial(n_c, p_c)
        x_b = rng.binomial(n_b, p_b)
        if latency_g:
            slow_now = during if world.incident and world.incident.latency_factor != 1.0 else np.zeros(runs, bool)
            add_b = np.zeros((runs, nb_))
            add_c = np.zeros((runs, nb_))
            # Only the runs still going, and only the buckets with any mass (the cost is per bucket).
            for mask, probs_c, probs_b in (
                (alive & ~slow_now, cand_normal, normal),
                (alive & slow_now, slow_incident, slow_incident),
            ):
                if mask.any():
                    add_b[np.ix_(mask, used)] = rng.multinomial(n_b[mask], probs_b[used] / probs_b[used].sum())
                    add_c[np.ix_(mask, used)] = rng.multinomial(n_c[mask], probs_c[used] / probs_c[used].sum())
            bins_c += add_c
            bins_b += add_b
        if trace_runs:
            for name, arr in (("n_c", n_c), ("x_c", x_c), ("n_b", n_b), ("x_b", x_b)):
                traced[name].append(np.asarray(arr[:trace_runs]).copy())
            if latency_g:
                traced["bins_c"].append(add_c[:trace_runs].copy())
                traced["bins_b"].append(add_b[:trace_runs].copy())
        cur["n_c"] += n_c
        cur["x_c"] += x_c
        cur["n_b"] += n_b
        cur["x_b"] += x_b
        window = np.roll(window, -1, axis=0)
        # As rollout.core.limit_window: the candidate's last 10 s, never before the step began.
        window[-1, 0] = n_c
        window[-1, 1] = x_c

        concurrent = weight < 100
        harm = np.zeros(runs, dtype=bool)
        closing: list[tuple[_Guardrail, Any, Any, Any]] = []
        for g in errors_g:
            h, s_cur, info = g.harmful(cur["x_c"], cur["n_c"], cur["x_b"], cur["n_b"], concurrent & alive)
            harm |= h
            closing.append((g, s_cur, info, cur["n_c"]))
        if latency_g:
            g = latency_g[0]
            cum_b = np.cumsum(bins_b[:, :-1], axis=1)
            cum_c = np.cumsum(bins_c[:, :-1], axis=1)
            own = _quantile_index(cum_b, q)
            thr = np.where(prev_threshold >= 0, prev_threshold, own)
            has = thr >= 0
            idx = np.maximum(thr, 0)
            slow_b = np.where(has, cur["n_b"] - cum_b[np.arange(runs), idx], 0)
            if relative:
                cand_bound = bound_arr[idx] * (1.0 + relative)
                # The smallest bound at or above T·(1 + r); past the last bound, the last bound.
                c_idx = np.minimum(np.searchsorted(bound_arr, cand_bound, side="left"), len(bound_arr) - 1)
            else:
                c_idx = idx
            slow_c = np.where(has, cur["n_c"] - cum_c[np.arange(runs), c_idx], 0)
            live = concurrent & alive & has
            h, s_cur, info = g.harmful(slow_c, cur["n_c"], slow_b, cur["n_b"], live)
            harm |= h
            closing.append((g, s_cur, info, cur["n_c"]))

        limit = np.zeros(runs, dtype=bool)
        if p_error_limit is not None:
            w_req = window[:, 0].sum(axis=0)
            w_err = window[:, 1].sum(axis=0)
            limit = (w_req >= LIMIT_MIN_REQUESTS) & (w_err > p_error_limit * np.maximum(w_req, 1))
        srm = _srm_mismatch(cur["n_c"], cur["n_b"], weight)
        elapsed = t - step_started
        past_max = elapsed >= policy.max_step
        short = cur["n_c"] < policy.min_samples

        rollback = alive & (limit | harm)
        held_srm = alive & ~rollback & srm
        srm_held += held_srm
        rest = alive & ~rollback & ~srm
        no_data = rest & past_max & short
        advance = rest & ~no_data & (elapsed >= policy.min_step) & ~short
        no_data_action = {"hold": "held", "fail": "rolled_back", "pass": "advance"}[policy.on_no_data]

        def end(mask: np.ndarray, what: str, why: str, t: int = t, weight: np.ndarray = weight) -> None:
            outcome[mask] = what
            rule[mask] = why
            t_end[mask] = t
            weight_end[mask] = weight[mask]
            alive[mask] = False

        end(alive & limit, "rolled_back", "limit")
        end(alive & harm, "rolled_back", "harm")
        if no_data_action == "advance":
            advance |= no_data
        else:
            end(no_data, no_data_action, "no_data")
        last = advance & (step + 1 >= len(steps))
        end(last, "promoted", "pass")
        nxt = advance & ~last
        if nxt.any():
            for g, s_cur, info, n in closing:
                g.close(nxt, s_cur, info, n)
            if latency_g:
                cum_b = np.cumsum(bins_b[:, :-1], axis=1)
                own = _quantile_index(cum_b, q)
                prev_threshold = np.where(nxt & (own >= 0), own, prev_threshold)
            step = np.where(nxt, step + 1, step).astype(int)
            step_started = np.where(nxt, float(t), step_started)
            for counts in cur.values():
                counts[nxt] = 0.0
            bins_c[nxt] = 0.0
            bins_b[nxt] = 0.0
            window[:, :, nxt] = 0.0
    trace = {n: np.stack(v, axis=1) for n, v in traced.items() if v}
    return SimResult(outcome.astype(str), t_end, rule.astype(str), weight_end, srm_held, trace)
