"""Experiment assignment as rendered for Envoy (pure): the hash, the routes, the listener."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from shiploop.gateway import render
from shiploop.gateway.assignment import BUCKETS, LUA_FILTER, VARIANT_HEADER, bucket, cut, lua_source
from shiploop.server.routing import ExperimentRouting, Placement, ServiceRouting, build_routing_state
from shiploop.spec import ServiceSpec


def _spec(name: str) -> ServiceSpec:
    return ServiceSpec.model_validate({"name": name, "run": {"command": ["python", "app.py"]}})


def _state(experiment: ExperimentRouting | None, event_log: str | None = "/tmp/x.log"):  # type: ignore[no-untyped-def]
    shop = ServiceRouting(_spec("shop"), (Placement("c1", "stable", 100), Placement("t1", "canary", 0)), (), experiment)
    other = ServiceRouting(_spec("other"), (Placement("o1", "stable", 100),))
    return build_routing_state([shop, other], lambda s, v: [1000], 8080, event_log=event_log)


EXPERIMENT = ExperimentRouting("salt-1", "cookie", "shiploop_uid", 50.0, "c1", "t1")


def test_bucket_is_pinned_uniform_and_spreads_sequential_ids() -> None:
    # Pinned: a change of the hash would move every unit of a running experiment
    # (the Lua copy in gateway/assignment.py must change with it; the integration test compares them).
    assert [bucket("salt-1", u) for u in ("user-0", "user-1", "")] == [1612, 6122, 6042]
    assert bucket("exp", "abc") == 148
    counts = Counter(bucket("s", f"user-{i}") * 10 // BUCKETS for i in range(20_000))
    # 2,000 expected per decile, sd 42: 6 sd either side.
    assert all(1750 < c < 2250 for c in counts.values()), counts
    assert len(counts) == 10
    # Another salt reshuffles: the treatment of one experiment is not the next one's.
    same = sum((bucket("a", f"u{i}") < 5000) == (bucket("b", f"u{i}") < 5000) for i in range(4000))
    assert 1800 < same < 2200
    assert cut(50) == 5000 and cut(0.5) == 50


def test_experiment_routes_carry_the_script_and_other_services_do_not() -> None:
    state = _state(EXPERIMENT)
    rendered = {r.name: render.route(r) for r in state.routes}
    assert set(rendered) == {"shop-0-treatment", "shop-0-control", "shop-0", "other-0"}
    for name in ("shop-0-treatment", "shop-0-control", "shop-0"):
        assert LUA_FILTER in rendered[name]["typed_per_filter_config"]
    assert "typed_per_filter_config" not in rendered["other-0"]
    treatment = rendered["shop-0-treatment"]
    assert {"name": VARIANT_HEADER, "string_match": {"exact": "shop:treatment"}} in treatment["match"]["headers"]
    assert treatment["route"]["cluster"] == "shop_t1"
    assert rendered["shop-0-control"]["route"]["cluster"] == "shop_c1"
    assert rendered["shop-0"]["route"]["cluster"] == "shop_c1"  # no unit id: stable's weights
    # Variant routes before the main route: Envoy's second match must find them.
    names = [r.name for r in state.routes]
    assert names.index("shop-0-treatment") < names.index("shop-0")


def test_no_experiment_no_script_and_the_listener_never_changes() -> None:
    without = _state(None)
    assert all("typed_per_filter_config" not in render.route(r) for r in without.routes)
    # The listener is the same with and without an experiment: starting one never drains connections.
    assert render.listener(without, Path("/x")) == render.listener(_state(EXPERIMENT), Path("/x"))
    hcm = render.listener(without, Path("/x"))["filter_chains"][0]["filters"][0]["typed_config"]
    assert [f["name"] for f in hcm["http_filters"]] == [LUA_FILTER, "envoy.filters.http.router"]
    assert hcm["access_log"][0]["typed_config"]["path"] == "/tmp/x.log"
    assert (
        "access_log"
        not in render.listener(_state(None, None), Path("/x"))["filter_chains"][0]["filters"][0]["typed_config"]
    )


def test_an_experiment_whose_versions_are_not_placed_is_not_routed() -> None:
    gone = ExperimentRouting("salt-1", "cookie", "shiploop_uid", 50.0, "c1", "zz")
    assert {r.name for r in _state(gone).routes} == {"shop-0", "other-0"}


def test_lua_source_quotes_the_names() -> None:
    src = lua_source(_state(EXPERIMENT).routes[0].assignment)  # type: ignore[arg-type]
    assert 'local UNIT_NAME = "shiploop_uid"' in src and 'local UNIT_PATTERN = "shiploop%_uid"' in src
    assert "local CUT = 5000" in src
