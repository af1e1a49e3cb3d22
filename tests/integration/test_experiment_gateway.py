"""Experiment assignment and events in a real Envoy: sticky units, a cookie for new visitors,
the event header logged and stripped, other routes untouched. One Envoy for every assertion."""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from pathlib import Path

import pytest

from shiploop.gateway.assignment import CONTROL, TREATMENT, arm_of
from shiploop.gateway.gateway import Gateway
from shiploop.procs import free_port
from shiploop.server.routing import ExperimentRouting, Placement, ServiceRouting, build_routing_state
from shiploop.spec import ServiceSpec
from tests import loopback
from tests.conftest import wait_until

COOKIE = "shiploop_uid"


def _spec(name: str, prefix: str) -> ServiceSpec:
    return ServiceSpec.model_validate(
        {"name": name, "run": {"command": ["python", "app.py"]}, "routes": [{"prefix": prefix}]}
    )


def _log_lines(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.slow  # over 4 s alone: with `make test`, not `make test-fast`
def test_units_stick_events_are_logged_and_stripped_other_routes_untouched(tmp_path, loop, spawn_app):
    control, treatment = spawn_app("c1", service="shop"), spawn_app("t1", service="shop")
    # The other service runs on the control's process (one app less to start): Envoy still
    # knows it as another service, with its own route and cluster.
    ports = {("shop", "c1"): [control.port], ("shop", "t1"): [treatment.port], ("other", "o1"): [control.port]}
    experiment = ExperimentRouting("exp-1", "cookie", COOKIE, 30.0, control="c1", treatment="t1")
    shop = ServiceRouting(
        _spec("shop", "/shop/"), (Placement("c1", "stable", 100), Placement("t1", "canary", 0)), (), experiment
    )
    others = ServiceRouting(_spec("other", "/other/"), (Placement("o1", "stable", 100),))
    log = tmp_path / "experiments.log"
    port = free_port()
    state = build_routing_state([shop, others], lambda s, v: ports[(s, v)], port, event_log=str(log))
    assignment = next(r.assignment for r in state.routes if r.assignment is not None)
    assert {r.name for r in state.routes} == {"shop-0", "shop-0-treatment", "shop-0-control", "other-0"}
    gateway = Gateway(tmp_path / "state")
    url = f"http://127.0.0.1:{port}"
    try:
        loop.run_until_complete(gateway.start(state))
        with loopback.client(base_url=url) as client:
            # Known units: every request of a unit goes to the variant its hash says, whatever
            # variant header the client sends; about 30% of units see the treatment.
            seen: dict[str, set[str]] = {}
            for i in range(200):
                unit = f"user-{i}"
                for spoof in ("", "shop:treatment" if i % 2 else "shop:control"):
                    headers = {"cookie": f"{COOKIE}={unit}", **({"x-shiploop-variant": spoof} if spoof else {})}
                    r = client.get("/shop/x", headers=headers)
                    assert r.status_code == 200
                    seen.setdefault(unit, set()).add(r.json()["version"])
                    assert "set-cookie" not in r.headers  # the unit had its id already
            assert all(len(v) == 1 for v in seen.values())
            expected = {u: "t1" if arm_of(assignment, u) == TREATMENT else "c1" for u in seen}
            assert {u: next(iter(v)) for u, v in seen.items()} == expected
            share = sum(v == "t1" for v in expected.values()) / len(expected)
            assert 0.17 < share < 0.43, share  # 30% of 200 units: 4 standard deviations either side

            # A new visitor gets an id in a cookie and keeps its variant with it.
            with loopback.client(base_url=url) as browser:  # keeps its cookies, as a browser does
                first = browser.get("/shop/x", headers={"x-echo-events": "signup"})
                new_id = first.cookies[COOKIE]
                assert len(new_id) == 32 and "Max-Age=31536000" in first.headers["set-cookie"]
                assert "shiploop-event" not in first.headers
                again = [browser.get("/shop/x").json()["version"] for _ in range(20)]
                assert set(again) == {first.json()["version"]}

            # Events: several per response, logged with the unit and stripped before the client.
            buyer_headers = {"cookie": f"{COOKIE}=buyer", "x-echo-events": "signup,purchase=12.50"}
            r = client.get("/shop/buy", headers=buyer_headers)
            assert r.status_code == 200 and "shiploop-event" not in r.headers

            # Another service's route: no assignment, no log line, its headers as the app sent them.
            r = client.get("/other/x", headers={"cookie": f"{COOKIE}=buyer", "x-echo-events": "signup"})
            assert r.headers["x-shiploop-version"] == "other@o1" and "set-cookie" not in r.headers
            assert r.headers.get("shiploop-event") == "signup"

        requests = 200 * 2 + 1 + 20 + 1
        lines = wait_until(lambda: (got := _log_lines(log)) and len(got) >= requests and got, 10, what="log lines")
        assert len(lines) == requests  # nothing logged for /other/
        first_line = next(x for x in lines if x["unit"] == new_id)
        assert (first_line["new"], first_line["events"], first_line["status"]) == ("1", "signup", 200)
        buyer = next(x for x in lines if x["unit"] == "buyer")
        assert buyer["events"] == "signup,purchase=12.50"
        assert buyer["arm"] == arm_of(assignment, "buyer")
        assert buyer["cluster"] == f"shop_{'t1' if buyer['arm'] == TREATMENT else 'c1'}"
        arms = Counter((x["unit"], x["arm"]) for x in lines)
        assert len({u for u, _ in arms}) == len(arms)  # one arm per unit in the log too
        assert {a for _, a in arms} == {CONTROL, TREATMENT}

        # Envoy killed and restarted from the files: the same units land where they did.
        assert gateway.process is not None
        os.kill(gateway.process.pid, signal.SIGKILL)
        wait_until(lambda: not gateway.alive(), 5, what="envoy to die")
        assert loop.run_until_complete(gateway.restart()) is not None
        with loopback.client(base_url=url) as client:
            after = {u: client.get("/shop/x", headers={"cookie": f"{COOKIE}={u}"}).json()["version"] for u in expected}
        assert after == {u: expected[u] for u in after}
    finally:
        loop.run_until_complete(gateway.stop())
