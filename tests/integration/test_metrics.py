"""Metrics: the Prometheus text parser, reset handling, and per-version counts from a real Envoy and real apps."""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shiploop.gateway.admin import EnvoyAdmin
from shiploop.gateway.gateway import Gateway
from shiploop.gateway.model import Cluster, Endpoint, Match, Route, RoutingState, WeightedTarget
from shiploop.metrics.app_source import cumulative_counters, scrape_app_metrics
from shiploop.metrics.counters import ReplicaCounters, advance_traffic, bucket_increase, increase
from shiploop.metrics.envoy_source import VersionTraffic, read_cluster_stats
from shiploop.metrics.prom_text import PromParseError, Sample, parse, parse_exposition
from shiploop.metrics.sampler import MetricsSampler, Target
from shiploop.procs import free_port
from tests import loopback
from tests.conftest import App, wait_until

# --- the parser ---------------------------------------------------------------------------------

TRICKY = (
    "# a plain comment, ignored\n"
    "#\n"
    "# HELP http_requests_total Requests served; a backslash \\\\ and a\\nnewline.\n"
    "# TYPE http_requests_total counter\n"
    'http_requests_total{method="post",code="200"} 1027 1395066363000\n'
    'http_requests_total{ method = "get" , code="400", } 3 -5\n'
    "\n"
    'msdos_file_access_time_seconds{path="C:\\\\DIR\\\\FILE.TXT",'
    'error="Cannot find file:\\n\\"FILE.TXT\\""} 1.458e+06\r\n'
    "metric_without_timestamp_and_labels 12.47\n"
    "empty_braces{} -0.5\n"
    'weird{a="}",b="{,=\\\\"} 1\n'
    "\t spaced_out \t 7 \t\n"
    "# TYPE rpc_duration_seconds summary\n"
    'rpc_duration_seconds{quantile="0.5"} NaN\n'
    "rpc_duration_seconds_sum 1.7560473e+07\n"
    "rpc_duration_seconds_count 2693\n"
    "# TYPE latency histogram\n"
    'latency_bucket{le="0.1"} 5\n'
    'latency_bucket{le="+Inf"} 9\n'
    "latency_count 9\n"
    'inf_values{s="+"} +Inf\n'
    'inf_values{s="-"} -Inf\n'
    "name:with:colons 1e-3\n"
)


def test_parser_reads_tricky_but_valid_text() -> None:
    expo = parse_exposition(TRICKY)
    s = expo.samples
    assert s[0] == Sample("http_requests_total", {"method": "post", "code": "200"}, 1027.0, 1395066363000)
    assert s[1] == Sample("http_requests_total", {"method": "get", "code": "400"}, 3.0, -5)
    assert s[2].labels == {"path": "C:\\DIR\\FILE.TXT", "error": 'Cannot find file:\n"FILE.TXT"'}
    assert s[2].value == 1.458e6
    assert s[3] == Sample("metric_without_timestamp_and_labels", {}, 12.47)
    assert s[4] == Sample("empty_braces", {}, -0.5)
    assert s[5].labels == {"a": "}", "b": "{,=\\"}
    assert s[6] == Sample("spaced_out", {}, 7.0)
    assert math.isnan(s[7].value) and s[7].labels == {"quantile": "0.5"}
    assert [x.value for x in s if x.name == "inf_values"] == [math.inf, -math.inf]
    assert s[-1] == Sample("name:with:colons", {}, 0.001)
    assert len(s) == 16
    assert expo.help["http_requests_total"] == "Requests served; a backslash \\ and a\nnewline."
    assert expo.type_of("http_requests_total") == "counter"
    assert expo.type_of("rpc_duration_seconds_count") == "summary"
    assert expo.type_of("latency_bucket") == "histogram"
    assert expo.type_of("metric_without_timestamp_and_labels") == "untyped"
    assert [(x.name, x.labels) for x in parse(TRICKY)] == [(x.name, x.labels) for x in s]


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("ok 1\nno_value\n", 2, "expected a value"),
        ("ok 1\n\n# HELP x y\nbad 1_000\n", 4, "invalid value"),
        ('x{a="b} 1\n', 1, "unterminated"),
        ('x{a="\\t"} 1\n', 1, "invalid escape"),
        ("x{a=b} 1\n", 1, "expected '\"'"),
        ('x{a="1",a="2"} 1\n', 1, "duplicate label"),
        ('x{a="1" b="2"} 1\n', 1, "expected ',' or '}'"),
        ("x 1 2 3\n", 1, "after the timestamp"),
        ("x 1 1.5\n", 1, "invalid timestamp"),
        ("1x 1\n", 1, "metric name"),
        ("# TYPE x countr\n", 1, "unknown metric type"),
        ("# TYPE x counter\n# TYPE x gauge\n", 2, "second TYPE"),
        ("x 0x10\n", 1, "invalid value"),
    ],
)
def test_parser_names_the_line_of_a_malformed_input(text: str, line: int, fragment: str) -> None:
    with pytest.raises(ValueError) as err:
        parse(text)
    assert isinstance(err.value, PromParseError) and err.value.lineno == line
    assert f"line {line}:" in str(err.value) and fragment in str(err.value)


def test_only_cumulative_series_are_summed() -> None:
    expo = parse_exposition(
        "# TYPE g gauge\ng 5\n"
        '# TYPE c counter\nc{k="1"} 2\nc{k="2"} 3\n'
        '# TYPE h histogram\nh_bucket{le="1"} 4\nh_bucket{le="+Inf"} 6\nh_sum 7.5\nh_count 6\n'
        "untyped_total 1\n"
    )
    assert cumulative_counters(expo) == {"c": 5.0, "h_sum": 7.5, "h_count": 6.0, "untyped_total": 1.0}
    with pytest.raises(ValueError, match="not a count"):
        cumulative_counters(parse_exposition("c NaN\n"))


# --- counters that reset ------------------------------------------------------------------------


def test_counter_reset_counts_the_new_reading_and_never_goes_negative() -> None:
    assert increase(None, 7) == (7, False)
    assert increase(7, 10) == (3, False)
    assert increase(10, 4) == (4, True)
    b1 = ((1.0, 2), (10.0, 5))
    assert bucket_increase(b1, ((1.0, 3), (10.0, 9))) == (((1.0, 1), (10.0, 4)), False)
    assert bucket_increase(b1, ((1.0, 1), (10.0, 1))) == (((1.0, 1), (10.0, 1)), True)

    total, reset = advance_traffic(VersionTraffic(), None, VersionTraffic(requests=10, errors_5xx=2))
    assert (total.requests, reset) == (10, False)
    # Envoy restarted: its counters start again from zero.
    total, reset = advance_traffic(total, VersionTraffic(requests=10, errors_5xx=2), VersionTraffic(requests=3))
    assert (total.requests, total.errors_5xx, reset) == (13, 2, True)


def test_one_replica_restarting_is_a_reset_of_that_replica_only() -> None:
    replicas = ReplicaCounters.empty()
    total: dict[str, float] = {}
    assert replicas.advance(total, 1.0, {8001: {"n": 100}, 8002: {"n": 100}}) == 0
    assert total == {"n": 200}
    # 8001 restarted and has served 5 since; 8002 served 10 more. The sum (115) fell, but 15 are new.
    assert replicas.advance(total, 2.0, {8001: {"n": 5}, 8002: {"n": 110}}) == 1
    assert total == {"n": 215}
    # 8002 drops out of the ready list and comes back without restarting: only what is new counts.
    replicas.advance(total, 3.0, {8001: {"n": 6}})
    replicas.advance(total, 4.0, {8001: {"n": 6}, 8002: {"n": 112}})
    assert total == {"n": 218}


# --- a real Envoy and real apps -----------------------------------------------------------------


def cluster_of(name: str, *apps: App) -> Cluster:
    return Cluster(name, tuple(Endpoint("127.0.0.1", a.port) for a in apps))


def one_route(port: int, clusters: list[Cluster], mirrors: tuple[str, ...] = ()) -> RoutingState:
    primary = WeightedTarget(clusters[0].name, 100, clusters[0].name)
    route = Route("echo", Match(prefix="/"), (primary,), mirrors=mirrors)
    return RoutingState(clusters=tuple(clusters), routes=(route,), listen_port=port)


@pytest.fixture
def gateway(tmp_path: Path, loop: asyncio.AbstractEventLoop) -> Iterator[Gateway]:
    gw = Gateway(tmp_path / "state")
    yield gw
    loop.run_until_complete(gw.stop())


@pytest.fixture
def http(loop: asyncio.AbstractEventLoop) -> Iterator[httpx.AsyncClient]:
    client = httpx.AsyncClient(timeout=2.0)
    yield client
    loop.run_until_complete(client.aclose())


def admin_of(gw: Gateway) -> EnvoyAdmin:
    assert gw.admin is not None
    return gw.admin


def send(port: int, n: int) -> Counter[int]:
    with loopback.client(timeout=10) as client:
        return Counter(client.get(f"http://127.0.0.1:{port}/x").status_code for _ in range(n))


def traffic_when(loop: asyncio.AbstractEventLoop, admin: EnvoyAdmin, cluster: str, requests: int) -> VersionTraffic:
    """Envoy's counts for `cluster` once it has completed `requests` and recorded as many latencies."""

    def read() -> VersionTraffic | None:
        t = loop.run_until_complete(read_cluster_stats(admin, [cluster])).get(cluster)
        return t if t is not None and t.requests == requests and t.latency_total == requests else None

    result: VersionTraffic = wait_until(read, 5, what=f"{cluster} to show {requests} requests")
    return result


def run(loop: asyncio.AbstractEventLoop, coro: Any) -> Any:
    return loop.run_until_complete(coro)


def test_envoy_counts_match_what_clients_saw(gateway, loop, spawn_app) -> None:
    a = spawn_app("a", FAIL_RATE="0.3")
    port = free_port()
    # A "-" and a "." in the name: the admin regex must escape cluster names (RE2 takes Python's escapes).
    run(loop, gateway.start(one_route(port, [cluster_of("my-echo_1.a", a)])))
    seen = send(port, 200)
    assert 0 < seen[500] < 200 and seen[200] + seen[500] == 200
    t = traffic_when(loop, admin_of(gateway), "my-echo_1.a", 200)
    assert t.errors_5xx == seen[500]
    assert t.attempts == 200 and t.retries == 0  # 500 is not a gateway error: no retries
    counts = [c for _, c in t.latency_buckets]
    assert counts == sorted(counts) and t.latency_total == 200


def test_mirrored_copies_count_on_the_shadow_cluster_only(gateway, loop, spawn_app) -> None:
    a, shadow = spawn_app("a"), spawn_app("shadow", FAIL_RATE="1")
    port = free_port()
    state = one_route(port, [cluster_of("echo_a", a), cluster_of("echo_shadow", shadow)], mirrors=("echo_shadow",))
    run(loop, gateway.start(state))
    assert send(port, 100) == Counter({200: 100})
    admin = admin_of(gateway)
    primary = traffic_when(loop, admin, "echo_a", 100)
    copy = traffic_when(loop, admin, "echo_shadow", 100)
    assert primary.errors_5xx == 0
    assert copy.errors_5xx == 100


def test_delta_counts_only_requests_after_the_timestamp(gateway, loop, spawn_app, http) -> None:
    a = spawn_app("a", FAIL_RATE="0.5")
    port = free_port()
    run(loop, gateway.start(one_route(port, [cluster_of("echo_a", a)])))
    admin = admin_of(gateway)
    sampler = MetricsSampler(lambda: gateway.admin, http)
    targets = [Target("echo", "a", "echo_a", [a.port])]

    first = send(port, 30)
    traffic_when(loop, admin, "echo_a", 30)
    run(loop, sampler.sample(100.0, targets))
    later = send(port, 20)
    traffic_when(loop, admin, "echo_a", 50)
    run(loop, sampler.sample(101.0, targets))

    snap = sampler.snapshot("echo", "a")
    assert snap is not None and snap.ok, snap
    assert snap.traffic.requests == 50 and snap.traffic.errors_5xx == first[500] + later[500]
    assert snap.app["app_requests_total"] == 50

    for since in (100.0, 100.5):
        d = sampler.delta("echo", "a", since)
        assert d is not None and d.ok and d.since_ts == 100.0
        assert d.traffic.requests == 20 and d.traffic.errors_5xx == later[500]
        assert d.traffic.latency_total == 20
        assert d.app["app_requests_total"] == 20 and d.app["app_errors_total"] == later[500]
        counts = [c for _, c in d.traffic.latency_buckets]
        assert counts == sorted(counts) and all(c >= 0 for c in counts)
    whole = sampler.delta("echo", "a", 0.0)  # before the history: counts from the oldest snapshot kept
    assert whole is not None and whole.since_ts == 100.0 and whole.traffic.requests == 20
    assert sampler.delta("echo", "a", 101.0).traffic.requests == 0  # type: ignore[union-attr]
    assert sampler.source_errors("echo") == []


def test_app_counters_are_summed_across_replicas(gateway, loop, spawn_app, http) -> None:
    r1, r2 = spawn_app("a"), spawn_app("a")
    port = free_port()
    run(loop, gateway.start(one_route(port, [cluster_of("echo_a", r1, r2)])))
    assert send(port, 40) == Counter({200: 40})
    scrape = run(loop, scrape_app_metrics(http, [r1.port, r2.port]))
    assert scrape.ok and scrape.counters["app_requests_total"] == 40
    assert set(scrape.per_replica) == {r1.port, r2.port}
    assert all(c["app_requests_total"] > 0 for c in scrape.per_replica.values())  # round robin used both

    sampler = MetricsSampler(admin_of(gateway), http)
    traffic_when(loop, admin_of(gateway), "echo_a", 40)
    run(loop, sampler.sample(1.0, [Target("echo", "a", "echo_a", [r1.port, r2.port])]))
    snap = sampler.snapshot("echo", "a")
    assert snap is not None and snap.ok
    assert snap.app["app_requests_total"] == 40 == snap.traffic.requests


def test_a_dead_replica_is_an_error_not_zero(gateway, loop, spawn_app, http) -> None:
    live = spawn_app("a")
    dead_port = free_port()
    port = free_port()
    run(loop, gateway.start(one_route(port, [cluster_of("echo_a", live)])))
    assert send(port, 10) == Counter({200: 10})

    scrape = run(loop, scrape_app_metrics(http, [live.port, dead_port]))
    assert scrape.counters["app_requests_total"] == 10
    assert len(scrape.errors) == 1 and str(dead_port) in scrape.errors[0]
    assert dead_port not in scrape.per_replica

    sampler = MetricsSampler(admin_of(gateway), http)
    traffic_when(loop, admin_of(gateway), "echo_a", 10)
    run(loop, sampler.sample(1.0, [Target("echo", "a", "echo_a", [live.port, dead_port])]))
    snap = sampler.snapshot("echo", "a")
    assert snap is not None and not snap.ok
    assert snap.traffic.requests == 10  # what could be read still is
    assert [e for e in sampler.source_errors("echo") if str(dead_port) in e and e.startswith("echo@a: ")]
    # The window that holds the failed reading is not healthy either, even once the replica list is fixed.
    run(loop, sampler.sample(2.0, [Target("echo", "a", "echo_a", [live.port])]))
    assert sampler.snapshot("echo", "a").ok  # type: ignore[union-attr]
    assert not sampler.delta("echo", "a", 1.0).ok  # type: ignore[union-attr]
    assert sampler.delta("echo", "a", 2.0).ok  # type: ignore[union-attr]


def test_unreadable_envoy_or_unknown_cluster_is_an_error(gateway, loop, spawn_app, http, tmp_path) -> None:
    a = spawn_app("a")
    port = free_port()
    run(loop, gateway.start(one_route(port, [cluster_of("echo_a", a)])))
    sampler = MetricsSampler(admin_of(gateway), http)
    run(loop, sampler.sample(1.0, [Target("echo", "b", "echo_b", [a.port], metrics_path=None)]))
    assert sampler.source_errors("echo") == ["echo@b: envoy has no stats for cluster echo_b"]

    nobody = EnvoyAdmin(tmp_path / "nobody-listens.sock", timeout_s=0.5)
    try:
        down = MetricsSampler(nobody, http)
        run(loop, down.sample(1.0, [Target("echo", "a", "echo_a", [a.port])]))
        snap = down.snapshot("echo", "a")
        assert snap is not None and not snap.ok and snap.errors[0].startswith("envoy admin")
        assert snap.app["app_requests_total"] == 0  # the app was read even though Envoy was not
    finally:
        run(loop, nobody.close())
