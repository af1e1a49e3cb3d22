"""CUPED fed from what the gateway logged before: the service's previous experiment with the same unit is the
pre-period, each unit's value there the covariate (a real SQLite store, the controller's `evaluate`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shiploop.experiments.evaluate import BUCKETS_MS, evaluate
from shiploop.store import Exposure, Store

SPEC: dict[str, Any] = {
    "hypothesis": "Free shipping raises items bought per visitor",
    "unit": {"cookie": "shiploop_uid"},
    "allocation": 50,
    "metrics": {"primary": {"event": "item", "value": "sum"}},
    "minimum_detectable_effect": 0.3,
}
NOW = 10_000.0


def _log(store: Store, experiment: int, salt: str, units: list[str], arms: list[str], items: np.ndarray) -> None:
    """One logged request per unit, reporting `item` once per item bought (value 1), as Envoy's log would."""
    exposures = [
        Exposure(salt, u, arm, 1.0, 200, 3.0, (("item", 1.0),) * int(k))
        for u, arm, k in zip(units, arms, items, strict=True)
    ]
    with store.transaction():
        store.record_exposures(experiment, exposures, list(BUCKETS_MS))


def _population(
    store: Store, pre_units: list[str], seed: int = 11
) -> tuple[dict[str, Any], np.ndarray, np.ndarray, np.ndarray]:
    """4,000 visitors, each with its own buying rate (heavy buyers buy more in either period); the candidate
    adds 0.5 items a visitor. `pre_units` are the ids the previous experiment saw them under."""
    rng = np.random.default_rng(seed)
    n = 4000
    rate = rng.gamma(1.0, 3.0, n)
    before, treated = rng.poisson(rate), rng.random(n) < 0.5
    during = rng.poisson(rate + 0.5 * treated)
    units = [f"visitor-{i}" for i in range(n)]
    first = store.insert_experiment("shop", "salt-1", "before", SPEC, "v0", "v1", 0.0)
    _log(store, first, "salt-1", pre_units, ["control"] * n, before)
    second = store.insert_experiment("shop", "salt-2", SPEC["hypothesis"], SPEC, "v1", "v2", NOW - 600)
    _log(store, second, "salt-2", units, ["treatment" if t else "control" for t in treated], during)
    row = store.experiment(second)
    assert row is not None
    status, _ = evaluate(store, row, NOW)
    return status, before.astype(float), during.astype(float), treated


def test_units_seen_in_the_previous_experiment_narrow_the_interval(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    status, before, during, treated = _population(store, [f"visitor-{i}" for i in range(4000)])
    cuped = status["cuped"]
    assert cuped["pre_period"] == "experiment #1" and cuped["units_seen_before"] == 4000
    assert cuped["applied"]
    # ρ² of before and during is about 0.55 here: half the variance goes, the interval shrinks by about 30%.
    rho = np.corrcoef(before, during)[0, 1]
    assert status["lift"]["variance_reduction"] == pytest.approx(rho**2, abs=0.08)
    lo, hi = status["lift"]["interval"]
    plain_lo, plain_hi = cuped["plain_interval"]
    assert hi - lo < 0.7 * (plain_hi - plain_lo)
    assert lo < 0.5 < hi and lo > 0  # covers the true lift, and shows it where the plain one may not
    # The table still shows what the visitors did, unadjusted.
    values = {v["arm"]: v["value"] for v in status["variants"]}
    assert values == pytest.approx({"control": during[~treated].mean(), "treatment": during[treated].mean()})


def test_a_previous_experiment_of_other_units_changes_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    status, *_ = _population(store, [f"someone-else-{i}" for i in range(4000)])
    assert status["cuped"]["units_seen_before"] == 0 and not status["cuped"]["applied"]
    assert status["lift"]["interval"] == status["cuped"]["plain_interval"]
    assert status["lift"]["variance_reduction"] is None
