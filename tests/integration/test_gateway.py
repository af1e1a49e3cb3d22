"""The gateway against a real Envoy and real app processes."""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shiploop.errors import ShiploopError
from shiploop.gateway.gateway import Gateway
from shiploop.gateway.model import (
    CircuitBreakerLimits,
    Cluster,
    Endpoint,
    Match,
    Retry,
    Route,
    RoutingState,
    WeightedTarget,
)
from shiploop.procs import free_port
from tests import loopback
from tests.conftest import App, wait_until


def cluster_for(app: App) -> Cluster:
    return Cluster(f"echo_{app.version}", (Endpoint("127.0.0.1", app.port),))


def target(app: App, weight: int) -> WeightedTarget:
    return WeightedTarget(f"echo_{app.version}", weight, f"echo@{app.version}")


def state(port: int, apps: list[App], routes: list[Route]) -> RoutingState:
    return RoutingState(clusters=tuple(cluster_for(a) for a in apps), routes=tuple(routes), listen_port=port)


@pytest.fixture
def gateway(tmp_path: Path, loop: asyncio.AbstractEventLoop) -> Iterator[Gateway]:
    gw = Gateway(tmp_path / "state")
    yield gw
    loop.run_until_complete(gw.stop())


def versions_of(client: httpx.Client, url: str, n: int, headers: dict[str, str] | None = None) -> Counter[str]:
    seen: Counter[str] = Counter()
    for _ in range(n):
        r = client.get(url, headers=headers)
        assert r.status_code == 200, r.text
        seen[r.headers["x-shiploop-version"]] += 1
    return seen


@pytest.mark.slow  # over 2.5 s alone: with `make test`, not `make test-fast`
def test_weighted_split_is_within_binomial_bounds(gateway, loop, spawn_app):
    a, b = spawn_app("a"), spawn_app("b")
    port = free_port()
    route = Route("echo", Match(prefix="/"), (target(a, 90), target(b, 10)))
    loop.run_until_complete(gateway.start(state(port, [a, b], [route])))
    with loopback.client() as client:
        seen = versions_of(client, f"http://127.0.0.1:{port}/x", 2000)
    n, p = 2000, 0.10
    sd = math.sqrt(n * p * (1 - p))
    # 4 standard deviations: a correct router fails this about once in 15,000 runs.
    assert abs(seen["echo@b"] - n * p) < 4 * sd, seen
    assert seen["echo@a"] + seen["echo@b"] == n


def test_header_route_takes_every_match_and_nothing_else(gateway, loop, spawn_app):
    a, b = spawn_app("a"), spawn_app("b")
    port = free_port()
    header_route = Route("echo-x", Match(prefix="/", headers=(("x-user", "ana"),)), (target(b, 100),))
    main_route = Route("echo", Match(prefix="/"), (target(a, 100),))
    loop.run_until_complete(gateway.start(state(port, [a, b], [header_route, main_route])))
    url = f"http://127.0.0.1:{port}/x"
    with loopback.client() as client:
        assert versions_of(client, url, 200, {"x-user": "ana"}) == Counter({"echo@b": 200})
        assert versions_of(client, url, 200, {"x-user": "bob"}) == Counter({"echo@a": 200})
        assert versions_of(client, url, 200) == Counter({"echo@a": 200})


def test_mirror_copies_traffic_but_clients_see_only_primary(gateway, loop, spawn_app):
    a = spawn_app("a")
    shadow = spawn_app("shadow", FAIL_RATE="1")  # the shadow fails everything: clients must not notice
    port = free_port()
    route = Route("echo", Match(prefix="/"), (target(a, 100),), mirrors=(f"echo_{shadow.version}",))
    loop.run_until_complete(gateway.start(state(port, [a, shadow], [route])))
    with loopback.client() as client:
        for _ in range(300):
            r = client.get(f"http://127.0.0.1:{port}/x")
            assert r.status_code == 200 and r.json()["version"] == "a"
    wait_until(lambda: shadow.served() == 300, 5, what="all mirrored copies to arrive")
    assert a.served() == 300


def test_weight_change_is_served_within_100ms_of_publish(gateway, loop, spawn_app):
    a, b = spawn_app("a"), spawn_app("b")
    port = free_port()
    url = f"http://127.0.0.1:{port}/x"
    loop.run_until_complete(gateway.start(state(port, [a, b], [Route("echo", Match(prefix="/"), (target(a, 100),))])))
    with loopback.client() as client:
        assert versions_of(client, url, 20) == Counter({"echo@a": 20})
        started = time.monotonic()
        loop.run_until_complete(
            gateway.publish(state(port, [a, b], [Route("echo", Match(prefix="/"), (target(b, 100),))]))
        )
        # The very first request after publish returns must already follow the new weights.
        first = client.get(url).headers["x-shiploop-version"]
        elapsed = time.monotonic() - started
    assert first == "echo@b"
    assert elapsed < 0.1, f"took {elapsed * 1000:.0f} ms"


def test_rejected_config_is_reported_and_previous_keeps_serving(gateway, loop, spawn_app):
    a = spawn_app("a")
    port = free_port()
    good = state(port, [a], [Route("echo", Match(prefix="/"), (target(a, 100),))])
    loop.run_until_complete(gateway.start(good))
    # Python accepts look-ahead; Envoy's RE2 does not, so only Envoy can reject this.
    bad = state(port, [a], [Route("echo", Match(regex="/x(?=y)"), (target(a, 100),))])
    with pytest.raises(ShiploopError) as err:
        loop.run_until_complete(gateway.publish(bad))
    assert "rejected" in err.value.line() and "(?=" in err.value.line()
    r = loopback.get(f"http://127.0.0.1:{port}/anything")
    assert r.status_code == 200 and r.json()["version"] == "a"
    # The files on disk are the good generation again, so an Envoy restart loads good config.
    current = (gateway.xds_dir / "current" / "rds.json").read_text()
    assert "(?=" not in current
    # And the next good publish goes through.
    loop.run_until_complete(gateway.publish(good))


@pytest.mark.slow  # over 2.5 s alone: with `make test`, not `make test-fast`
def test_retries_hide_flaky_upstream_and_are_needed(gateway, loop, spawn_app):
    flaky = spawn_app("flaky", FAIL_RATE="0.3")
    port = free_port()
    plain = Route("plain", Match(prefix="/plain"), (target(flaky, 100),), retry=Retry(attempts=0))
    retried = Route("retried", Match(prefix="/retried"), (target(flaky, 100),), retry=Retry(attempts=10, on=("5xx",)))
    loop.run_until_complete(gateway.start(state(port, [flaky], [plain, retried])))
    with loopback.client() as client:
        plain_codes = Counter(client.get(f"http://127.0.0.1:{port}/plain").status_code for _ in range(200))
        retried_codes = Counter(client.get(f"http://127.0.0.1:{port}/retried").status_code for _ in range(200))
    assert plain_codes[500] > 20, plain_codes  # about 60 expected: the upstream really is flaky
    assert retried_codes == Counter({200: 200}), retried_codes  # 0.3^11 per request: none expected


def test_route_timeout_answers_504(gateway, loop, spawn_app):
    slow = spawn_app("slow", SLOW_RATE="1", SLOW_MS="2000")
    port = free_port()
    route = Route("slow", Match(prefix="/"), (target(slow, 100),), timeout_s=0.2, retry=Retry(attempts=0))
    loop.run_until_complete(gateway.start(state(port, [slow], [route])))
    started = time.monotonic()
    r = loopback.get(f"http://127.0.0.1:{port}/x", timeout=5)
    assert r.status_code == 504
    assert time.monotonic() - started < 1.5


def test_circuit_breaker_sheds_load_beyond_its_limits(gateway, loop, spawn_app):
    slow = spawn_app("slow", SLOW_RATE="1", SLOW_MS="300")
    port = free_port()
    limits = CircuitBreakerLimits(max_connections=1, max_pending_requests=1, max_requests=1, max_retries=0)
    cluster = Cluster("echo_slow", (Endpoint("127.0.0.1", slow.port),), circuit_breaker=limits)
    route = Route("slow", Match(prefix="/"), (target(slow, 100),), retry=Retry(attempts=0))
    loop.run_until_complete(gateway.start(RoutingState(clusters=(cluster,), routes=(route,), listen_port=port)))

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=10) as client:
            return await asyncio.gather(*(client.get(f"http://127.0.0.1:{port}/x") for _ in range(10)))

    responses = asyncio.run(burst())
    codes = Counter(r.status_code for r in responses)
    overflowed = [r for r in responses if r.status_code == 503]
    assert codes[200] >= 1 and len(overflowed) >= 5, codes
    assert all(r.headers.get("x-envoy-overloaded") == "true" for r in overflowed)
