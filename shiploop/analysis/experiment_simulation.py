"""Simulated hypothesis experiments, thousands at once: false ships, coverage, power.

Units arrive one after another; each is assigned to the candidate with the
allocation's probability (as Envoy's hash of the unit id does) and converts
with its variant's true rate. For the `revenue` metric a converting unit also
spends a lognormal amount (heavy-tailed, as purchase values are), so its value
is 0 most of the time. The experiment is looked at every `look_every` units
(every unit is the strictest watcher) with the very functions
`estimate_lift` uses (`mean_unit_variance`, `half_width`, `tau_for_mde`,
MIN_UNITS), and decide's rule on the primary metric: ship at the first look
whose lower bound is above 0, stop at the first whose upper bound is below
-mde. A naive fixed-horizon 95% interval, looked at the same way, is
simulated beside it to show what peeking does without a confidence sequence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from shiploop.analysis.experiment import (
    MIN_UNITS,
    POOLED_FLOOR,
    half_width,
    mean_unit_variance,
    normal_quantile,
    tau_for_mde,
)

# Revenue per purchase: lognormal with median e³ ≈ 20 and σ = 1 (mean e^3.5 ≈ 33).
REVENUE_MU = 3.0
REVENUE_SIGMA = 1.0
REVENUE_MEAN = math.exp(REVENUE_MU + REVENUE_SIGMA**2 / 2.0)

# Random draws per chunk of runs: bounds memory (about 8 arrays of this many floats).
_CHUNK_DRAWS = 2_000_000


@dataclass(frozen=True)
class Scenario:
    control_rate: float  # true conversion rate of the control
    treatment_rate: float  # of the candidate (equal: an A/A experiment)
    units: int  # units in each run (both variants)
    allocation_percent: float = 50.0
    mde: float = 0.01  # absolute, on the metric (for revenue: per-unit mean)
    metric: str = "conversion"  # or "revenue"
    alpha: float = 0.05
    look_every: int = 1  # units between looks

    @property
    def true_lift(self) -> float:
        lift = self.treatment_rate - self.control_rate
        return lift * REVENUE_MEAN if self.metric == "revenue" else lift


@dataclass(frozen=True)
class SimulationResult:
    scenario: Scenario
    runs: int
    shipped: float  # share of runs whose first decision was ship
    stopped: float  # share whose first decision was stop (upper bound < -mde)
    covered: float  # share whose interval covered the true lift at every look of the whole run
    naive_shipped: float  # the same rule with a fixed-horizon 95% interval looked at every time
    median_decision_units: float  # units at the first decision, over the runs that decided (nan: none)
    final_lower_above_zero: float  # share whose lower bound is above 0 at the last look
    ship_units: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))  # per run; inf: not shipped

    def shipped_by(self, units: float) -> float:
        """Share of runs whose first decision was ship, at `units` units or fewer."""
        return float(np.mean(self.ship_units <= units))

    def as_dict(self) -> dict[str, object]:
        skip = ("scenario", "ship_units")
        return {k: v for k, v in self.__dict__.items() if k not in skip} | {"scenario": self.scenario.__dict__}


def _first(mask: np.ndarray) -> np.ndarray:
    """Index of the first True along the last axis, or the axis length where there is none."""
    looks = mask.shape[-1]
    return np.where(mask.any(axis=-1), mask.argmax(axis=-1), looks)


@dataclass(frozen=True)
class Looks:
    """What a watcher saw at every look of k runs (arrays of shape (k, looks))."""

    units: np.ndarray  # units so far at each look (shape (looks,))
    control_units: np.ndarray
    treatment_units: np.ndarray
    lift: np.ndarray  # treatment mean - control mean
    variance: np.ndarray  # Var(lift), the plug-in estimate
    lower: np.ndarray  # the confidence sequence (infinite before MIN_UNITS in each variant)
    upper: np.ndarray
    enough: np.ndarray  # both variants have MIN_UNITS units


def draw(scenario: Scenario, runs: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(treated, value) of shape (runs, units): each unit's variant and metric value."""
    s = scenario
    treated = rng.random((runs, s.units)) < s.allocation_percent / 100.0
    rate = np.where(treated, s.treatment_rate, s.control_rate)
    value = (rng.random((runs, s.units)) < rate).astype(float)
    if s.metric == "revenue":
        value *= rng.lognormal(REVENUE_MU, REVENUE_SIGMA, size=(runs, s.units))
    return treated, value


def watch(scenario: Scenario, treated: np.ndarray, value: np.ndarray) -> Looks:
    """The interval at every look, computed as estimate_lift computes it, for all runs at once."""
    s = scenario
    tau = tau_for_mde(s.mde, s.alpha)
    binary = s.metric == "conversion"
    looks = np.arange(s.look_every - 1, s.units, s.look_every)
    n_t = np.cumsum(treated, axis=1)[:, looks].astype(float)
    n_c = (looks + 1.0) - n_t
    x_t = np.cumsum(value * treated, axis=1)[:, looks]
    x_c = np.cumsum(value, axis=1)[:, looks] - x_t
    xx_t = np.cumsum(value * value * treated, axis=1)[:, looks]
    xx_c = np.cumsum(value * value, axis=1)[:, looks] - xx_t
    # As arm_variances: each variant's unit variance, at least POOLED_FLOOR × the pooled one.
    pooled = POOLED_FLOOR * mean_unit_variance(n_c + n_t, x_c + x_t, xx_c + xx_t, binary)
    var_c = np.fmax(mean_unit_variance(n_c, x_c, xx_c, binary), pooled)
    var_t = np.fmax(mean_unit_variance(n_t, x_t, xx_t, binary), pooled)
    var = var_c / np.maximum(n_c, 1.0) + var_t / np.maximum(n_t, 1.0)
    enough = np.minimum(n_c, n_t) >= MIN_UNITS
    lift = x_t / np.maximum(n_t, 1.0) - x_c / np.maximum(n_c, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = np.where(enough, half_width(1.0 / var, tau, s.alpha), np.inf)
    return Looks(looks + 1, n_c, n_t, lift, var, lift - h, lift + h, enough)


def simulate(scenario: Scenario, runs: int, seed: int = 0) -> SimulationResult:
    """`runs` independent experiments of `scenario`, all watched at every look."""
    s = scenario
    rng = np.random.default_rng(seed)
    z = normal_quantile(1.0 - s.alpha / 2.0)
    chunk = max(1, _CHUNK_DRAWS // s.units)
    ship_at: list[np.ndarray] = []
    stop_at: list[np.ndarray] = []
    naive_at: list[np.ndarray] = []
    covered: list[np.ndarray] = []
    final_up: list[np.ndarray] = []
    done = 0
    units = np.arange(s.look_every, s.units + 1, s.look_every)
    while done < runs:
        k = min(chunk, runs - done)
        done += k
        seen = watch(s, *draw(s, k, rng))
        lower, upper = seen.lower, seen.upper
        ship_at.append(_first(lower > 0.0))
        stop_at.append(_first(upper < -abs(s.mde)))
        naive_at.append(_first(seen.enough & (seen.lift - z * np.sqrt(seen.variance) > 0.0)))
        covered.append(np.asarray(((lower <= s.true_lift) & (s.true_lift <= upper)).all(axis=1)))
        final_up.append(lower[:, -1] > 0.0)
    ship, stop = np.concatenate(ship_at), np.concatenate(stop_at)
    n_looks = len(units)
    first = np.minimum(ship, stop)
    decided = first < n_looks
    at = units[np.minimum(first, n_looks - 1)].astype(float)
    units_at = at[decided]
    shipped = (ship < n_looks) & (ship <= stop)
    return SimulationResult(
        scenario=s,
        runs=runs,
        shipped=float(np.mean(shipped)),
        stopped=float(np.mean((stop < n_looks) & (stop < ship))),
        covered=float(np.mean(np.concatenate(covered))),
        naive_shipped=float(np.mean(np.concatenate(naive_at) < n_looks)),
        median_decision_units=float(np.median(units_at)) if units_at.size else math.nan,
        final_lower_above_zero=float(np.mean(np.concatenate(final_up))),
        ship_units=np.where(shipped, at, np.inf),
    )
