"""Hypothesis-experiment statistics by simulation: A/A false ships, coverage, power against the plan.

    .venv/bin/python -m bench.experiments [--runs 1000] [--quick]

Thousands of experiments (shiploop.analysis.experiment_simulation: the very
functions estimate_lift uses, checked look by look against it in
tests/unit/test_experiment_sim.py), each watched at every unit (a stricter
watcher than "every second" at any traffic over one new unit per second):

  A/A: the candidate is the control. The share of runs whose first decision
  was ship (the rule: lower bound of the 95% confidence sequence above 0),
  was stop (upper bound below -MDE), the share whose interval covered the true
  lift (0) at every look of the whole run, and for contrast the share a
  fixed-horizon 95% interval, looked at as often, would have shipped.

  Power: the true lift is the MDE. The share shipped within the plan's
  fixed-horizon N (plan_experiment().fixed_units) and within its sequential
  N (sequential_units, the plan's promise: 80%), the median units at the ship,
  and coverage of the true lift throughout.

  Relative lift: the relative interval (delta method, Lift.relative_interval)
  covers the true relative lift at every look, computed with estimate_lift
  itself on the cumulative sums, looked at every 200 units (slower: one
  call per look).

Prints the tables (Markdown) and writes bench/results/experiments.json.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from bench.common import machine, print_header, table, write_results
from shiploop.analysis.experiment import UnitSums, estimate_lift, plan_experiment
from shiploop.analysis.experiment_simulation import Scenario, simulate

NAME = "experiments"

A_A: list[tuple[str, Scenario]] = [
    ("conversion 10%, 50/50, MDE 0.02", Scenario(0.1, 0.1, 20000, mde=0.02)),
    ("conversion 10%, 50/50, MDE 0.005", Scenario(0.1, 0.1, 20000, mde=0.005)),
    ("conversion 2%, 10/90", Scenario(0.02, 0.02, 20000, allocation_percent=10, mde=0.01)),
    ("conversion 0.5%, 10/90", Scenario(0.005, 0.005, 40000, allocation_percent=10, mde=0.005)),
    ("revenue (5% buy), 50/50", Scenario(0.05, 0.05, 20000, mde=0.5, metric="revenue")),
    ("revenue (2% buy), 10/90", Scenario(0.02, 0.02, 20000, allocation_percent=10, mde=0.5, metric="revenue")),
]

POWER: list[tuple[str, float, float, float]] = [
    # name, baseline, mde, allocation
    ("10% -> 12%, 50/50", 0.1, 0.02, 50.0),
    ("10% -> 11%, 50/50", 0.1, 0.01, 50.0),
    ("5% -> 6%, 20/80", 0.05, 0.01, 20.0),
]


RELATIVE: list[tuple[str, float, float, float]] = [
    # name, control rate, treatment rate, allocation (0-1)
    ("10% -> 12%, 50/50", 0.1, 0.12, 0.5),
    ("2% -> 2.5%, 10/90", 0.02, 0.025, 0.1),
    ("10% A/A, 50/50", 0.1, 0.1, 0.5),
]


def relative_coverage(
    p_c: float, p_t: float, a: float, runs: int, units: int = 20000, every: int = 200
) -> dict[str, float]:
    """Share of runs whose absolute and relative intervals covered the truth at every look."""
    rng = np.random.default_rng(3)
    mde = (p_t - p_c) or 0.01
    miss_abs = miss_rel = 0
    for _ in range(runs):
        t = rng.random(units) < a
        x = (rng.random(units) < np.where(t, p_t, p_c)).astype(float)
        n_c, n_t = np.cumsum(~t), np.cumsum(t)
        x_c, x_t = np.cumsum(x * ~t), np.cumsum(x * t)
        bad_abs = bad_rel = False
        for k in range(every - 1, units, every):
            lift = estimate_lift(
                UnitSums(int(n_c[k]), float(x_c[k]), float(x_c[k])),
                UnitSums(int(n_t[k]), float(x_t[k]), float(x_t[k])),
                mde=mde,
            )
            bad_abs |= not lift.interval[0] <= p_t - p_c <= lift.interval[1]
            rel = lift.relative_interval
            bad_rel |= rel is not None and not rel[0] <= p_t / p_c - 1.0 <= rel[1]
        miss_abs += bad_abs
        miss_rel += bad_rel
    return {"covered_absolute": 1 - miss_abs / runs, "covered_relative": 1 - miss_rel / runs}


def share(v: float) -> str:
    return f"{v:.3f}"


def run(runs: int, quick: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"runs": runs, "a_a": [], "power": []}
    rows = []
    for name, scenario in A_A[:2] if quick else A_A:
        t0 = time.monotonic()
        r = simulate(scenario, runs, seed=1)
        took = time.monotonic() - t0
        rows.append(
            [name, scenario.units, *(share(v) for v in (r.shipped, r.stopped, r.covered, r.naive_shipped)), took]
        )
        out["a_a"].append({"name": name, **r.as_dict(), "seconds": took})
    print(f"A/A, {runs} runs each, looked at after every unit:\n")
    print(table(["scenario", "units", "shipped", "stopped", "covered", "naive shipped", "s"], rows))
    rows = []
    for name, baseline, mde, allocation in POWER[:1] if quick else POWER:
        plan = plan_experiment(baseline, mde, units_per_second=1.0, allocation_percent=allocation)
        scenario = Scenario(
            baseline, baseline + mde, plan.sequential_units, allocation_percent=allocation, mde=mde, look_every=5
        )
        t0 = time.monotonic()
        r = simulate(scenario, runs, seed=2)
        took = time.monotonic() - t0
        row = {
            "name": name,
            "fixed_units": plan.fixed_units,
            "sequential_units": plan.sequential_units,
            "shipped_by_fixed": r.shipped_by(plan.fixed_units),
            "shipped_by_sequential": r.shipped_by(plan.sequential_units),
            "median_ship_units": r.median_decision_units,
            "covered": r.covered,
            "seconds": took,
        }
        out["power"].append(row)
        rows.append(
            [
                name,
                plan.fixed_units,
                plan.sequential_units,
                share(r.shipped_by(plan.fixed_units)),
                share(r.shipped_by(plan.sequential_units)),
                r.median_decision_units,
                share(r.covered),
                took,
            ]
        )
    print(f"\nPower at the MDE, {runs} runs each, looked at every 5 units:\n")
    print(
        table(
            ["lift", "fixed N", "sequential N", "shipped by fixed N", "by sequential N", "median N", "covered", "s"],
            rows,
        )
    )
    rows = []
    out["relative"] = []
    for name, p_c, p_t, a in RELATIVE[:1] if quick else RELATIVE:
        t0 = time.monotonic()
        cov = relative_coverage(p_c, p_t, a, runs)
        took = time.monotonic() - t0
        out["relative"].append({"name": name, **cov, "seconds": took})
        rows.append([name, share(cov["covered_absolute"]), share(cov["covered_relative"]), took])
    print(f"\nRelative lift, {runs} runs each, 20,000 units looked at every 200:\n")
    print(table(["lift", "absolute covered", "relative covered", "s"], rows))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="two A/A scenarios and one power scenario")
    args = parser.parse_args()
    info = machine()
    print_header(
        "experiment statistics",
        "A/A false ships, coverage throughout, power at the MDE against the plan",
        f"shiploop.analysis.experiment_simulation, {args.runs} runs per scenario",
        info,
    )
    data = run(args.runs, args.quick)
    write_results(NAME, {"machine": info, **data})


if __name__ == "__main__":
    main()
