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

Prints the tables (Markdown) and writes bench/results/experiments.json.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from bench.common import machine, print_header, table, write_results
from shiploop.analysis.experiment import plan_experiment
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
