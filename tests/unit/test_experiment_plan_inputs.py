"""`experiment plan` without --baseline: the rate the gateway saw on stable; units a second from live traffic."""

from __future__ import annotations

from pathlib import Path

import pytest

from shiploop.experiments.evaluate import BUCKETS_MS
from shiploop.experiments.plan_inputs import baseline_seen, units_per_second
from shiploop.store import Exposure, Store

SPEC = {"hypothesis": "h", "unit": {"cookie": "uid"}, "metrics": {"primary": {"event": "signup"}}}


def _experiment(store: Store, units: int, signups: int, requests_each: int, start: float, end: float) -> int:
    exp = store.insert_experiment("shop", f"salt-{start}", "h", SPEC, "v0", "v1", start)
    exposures = [
        Exposure(
            "s",
            f"u{i}",
            "control" if i % 2 else "treatment",
            start,
            200,
            1.0,
            (("signup", None),) if i < 2 * signups and i % 2 else (),
        )  # fmt: skip
        for i in range(units)
        for _ in range(requests_each)
    ]
    with store.transaction():
        store.record_exposures(exp, exposures, list(BUCKETS_MS))
    store.update_experiment(exp, "shipped", ended_at=end)
    return exp


def test_baseline_from_the_newest_experiment_that_measured_a_rate(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    assert baseline_seen(store, "shop", "signup") is None  # nothing seen: the CLI asks for --baseline
    _experiment(store, units=200, signups=10, requests_each=1, start=0.0, end=100.0)  # 10 of 100 on control
    _experiment(store, units=40, signups=0, requests_each=1, start=200.0, end=300.0)  # no signup: no rate
    seen = baseline_seen(store, "shop", "signup")
    assert seen is not None and seen.value == pytest.approx(0.1)
    assert seen.source == "signup on stable: 10 of 100 units in experiment #1"
    assert baseline_seen(store, "shop", "purchase") is None and baseline_seen(store, "other", "signup") is None


def test_units_a_second_from_live_traffic_over_requests_a_unit(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    assert units_per_second(store, "shop", None, 1000.0) is None
    no_history = units_per_second(store, "shop", 50.0, 1000.0)
    assert no_history is not None and no_history.value == 50.0 and "upper bound" in no_history.source
    _experiment(store, units=100, signups=5, requests_each=4, start=0.0, end=200.0)
    live = units_per_second(store, "shop", 50.0, 1000.0)
    assert live is not None and live.value == pytest.approx(12.5) and "4 requests a unit" in live.source
    idle = units_per_second(store, "shop", None, 1000.0)  # no traffic now: the experiment's own rate
    assert idle is not None and idle.value == pytest.approx(0.5) and "no traffic now" in idle.source
