"""Rollouts judged from Prometheus (`metrics: {source: prometheus}`), without processes.

The parse layer is checked against answers a real Prometheus gave to shiploop's own
queries (tests/unit/recorded/prometheus_answers.json: recorded from a real run, replayed
here, not live). The readings source and the controller run against `FakePrometheus`,
which scrapes the rollout fakes' traffic every 5 simulated seconds and answers in the
API's documented shape, so the same rollout can be judged from both sources.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from shiploop.daemon.rollouts import check_metrics_source
from shiploop.errors import Invalid, ShiploopError
from shiploop.metrics.prometheus_api import PrometheusQueryError, parse_answer
from shiploop.metrics.prometheus_counts import REQUESTS, RESPONSES, aligned_traffic, app_query, parse_app, traffic_query
from shiploop.naming import RolloutState
from shiploop.rollout import prometheus_readings
from shiploop.rollout.controller import RolloutController
from shiploop.rollout.prometheus_readings import PrometheusReadings
from shiploop.rollout.readings import ReadingUnavailable
from shiploop.spec import MetricsSpec, RolloutPolicy, load_project
from tests.unit.rollout_fakes import CANDIDATE, STABLE, Counter, FakeClock, FakeTraffic, Harness, fast_policy

RECORDED = json.loads((Path(__file__).parent / "recorded" / "prometheus_answers.json").read_text())
PROJECT = "testproj"
URL = "http://prometheus.test:9090"


# -- the parse layer, on recorded answers ------------------------------------------------------------


def test_recorded_traffic_answer_reads_both_versions_as_of_the_baselines_latest_scrape():
    traffic = aligned_traffic(parse_answer(RECORDED["traffic"]["body"]), anchor=RECORDED["stable"])
    canary, stable = traffic[RECORDED["canary"]], traffic[RECORDED["stable"]]
    # Recorded: the canary's target was scraped at .770 (61 requests) and 435.770 (90), the stable's
    # at 428.615 and 433.612 (175). The canary is read at its scrape before the stable's latest.
    assert (stable.sampled_at, stable.traffic.requests) == (pytest.approx(1795837433.612), 175)
    assert (canary.sampled_at, canary.traffic.requests, canary.traffic.errors_5xx) == (
        pytest.approx(1795837430.77),
        61,
        18,
    )
    # Envoy makes the 5xx counter at the first 5xx: stable has no such series, and that is 0 errors.
    assert stable.traffic.errors_5xx == 0
    bounds = [ub for ub, _ in canary.traffic.latency_buckets]
    assert bounds == sorted(bounds) and bounds[0] == 0.5 and bounds[-1] == 60000.0  # +Inf left out, as Envoy's JSON
    counts = [c for _, c in canary.traffic.latency_buckets]
    assert counts == sorted(counts) and canary.traffic.latency_total == counts[-1] == 58
    # Anchored on the canary instead, each is read at its own latest scrape.
    other = aligned_traffic(parse_answer(RECORDED["traffic"]["body"]), anchor=RECORDED["canary"])
    assert other[RECORDED["canary"]].traffic.requests == 90 and other[RECORDED["stable"]].traffic.requests == 175
    assert aligned_traffic(parse_answer(RECORDED["traffic"]["body"]), anchor="nosuchversion") == {}


def test_recorded_app_answer_sums_the_replicas_per_version():
    app = parse_app(parse_answer(RECORDED["app"]["body"]))
    assert app.down == []
    assert app.counters[RECORDED["canary"]] == {"app_errors_total": 23.0, "app_requests_total": 83.0}
    assert app.counters[RECORDED["stable"]] == {"app_errors_total": 0.0, "app_requests_total": 185.0}


def test_the_queries_sent_are_the_ones_recorded():
    versions = [RECORDED["canary"], RECORDED["stable"]]
    assert traffic_query(PROJECT, "echo", versions, 10.2) == RECORDED["traffic"]["query"]
    assert app_query(PROJECT, "echo", versions, ["app_requests_total", "app_errors_total"]) == RECORDED["app"]["query"]


def test_error_answers_and_unknown_shapes_are_one_line_errors():
    with pytest.raises(PrometheusQueryError) as e:
        parse_answer(RECORDED["bad_query"]["body"])  # recorded: HTTP 400 with a JSON error body
    assert str(e.value).startswith('bad_data: invalid parameter "query": 1:17: parse error') and "\n" not in str(
        e.value
    )
    matrix = {"status": "success", "data": {"resultType": "matrix", "result": []}}
    assert parse_answer(matrix) == []
    scalar = {"status": "success", "data": {"resultType": "scalar", "result": [1.0, "2"]}}
    with pytest.raises(PrometheusQueryError, match="expected a vector or a matrix, got scalar"):
        parse_answer(scalar)
    odd = {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": "x"}]}}
    with pytest.raises(PrometheusQueryError, match="a series of unexpected shape"):
        parse_answer(odd)
    with pytest.raises(PrometheusQueryError, match="not a JSON object"):
        parse_answer(["no"])


def test_a_replica_target_down_is_named():
    body = {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [
                {"metric": {"__name__": "orders_total", "version": "v1"}, "value": [1.0, "10"]},
                {
                    "metric": {"__name__": "up", "version": "v2", "replica": "1", "instance": "127.0.0.1:4000"},
                    "value": [1.0, "0"],
                },
            ],
        },
    }
    app = parse_app(parse_answer(body))
    assert app.counters == {"v1": {"orders_total": 10.0}}
    assert app.down == ["v2: replica 1 at 127.0.0.1:4000: down in prometheus"]


# -- a Prometheus scraping the fakes' traffic ------------------------------------------------------------


def _series(labels: dict[str, str], points: list[tuple[float, int]]) -> dict[str, Any]:
    return {"metric": labels, "values": [[at, str(v)] for at, v in points]}


class FakePrometheus:
    """Scrapes FakeTraffic every `interval` s (each version's target at its own phase, as Envoy's per-track
    targets are) and answers shiploop's traffic query (raw samples) and app query (latest values) in the
    API's documented shapes."""

    def __init__(self, traffic: FakeTraffic, clock: FakeClock, interval: float = 5.0) -> None:
        self.traffic = traffic
        self.clock = clock
        self.interval = interval
        self.phase = {CANDIDATE: 1.3, STABLE: 3.1}
        self.scrapes: dict[str, list[tuple[float, Counter]]] = {}
        self.unreachable = False
        self.queries: list[str] = []

    def _scrape(self) -> None:
        now = self.clock()
        for version in self.traffic.deployments.rows:  # a deployed version's cluster exists, at 0 before traffic
            phase = self.phase.get(version, 0.0)
            due = math.floor((now - phase) / self.interval) * self.interval + phase
            history = self.scrapes.setdefault(version, [])
            if not history or history[-1][0] < due:
                c = self.traffic.counter(version)
                history.append((due, Counter(c.requests, c.errors, dict(c.app))))

    def handle(self, request: httpx.Request) -> httpx.Response:
        if self.unreachable:
            raise httpx.ConnectError("connection refused", request=request)
        query = httpx.QueryParams(request.content.decode())["query"]
        self.queries.append(query)
        self._scrape()
        versions = re.search(r'version=~"([^"]*)"', query)
        assert versions is not None
        now = self.clock()
        window = re.search(r"\[(\d+)s\]$", query)
        result: list[dict[str, Any]] = []
        for version in versions.group(1).split("|"):
            history = self.scrapes.get(version, [])
            if window is not None:  # the traffic query: raw samples of the window
                kept = [(at, c) for at, c in history if at > now - int(window.group(1))]
                result.append(_series({"__name__": REQUESTS, "version": version}, [(at, c.requests) for at, c in kept]))
                with_errors = [(at, c.errors) for at, c in kept if c.errors]
                if with_errors:
                    labels = {"__name__": RESPONSES, "envoy_response_code_class": "5", "version": version}
                    result.append(_series(labels, with_errors))
            elif history:
                at, c = history[-1]
                result.extend(
                    {"metric": {"__name__": name, "version": version}, "value": [now, str(v)]}
                    for name, v in c.app.items()
                )
        kind = "matrix" if window is not None else "vector"
        return httpx.Response(200, json={"status": "success", "data": {"resultType": kind, "result": result}})


def prometheus_harness(tmp_path: Path, policy: RolloutPolicy | None = None) -> tuple[Harness, FakePrometheus]:
    """The rollout fakes, judged through PrometheusReadings reading a FakePrometheus that scrapes them."""
    h = Harness(tmp_path, policy)
    prom = FakePrometheus(h.traffic, h.clock)

    async def traffic_flows(seconds: float) -> None:  # while the source waits for a scrape, as it does for real
        h.traffic.serve(seconds)
        h.clock.now += seconds

    readings = PrometheusReadings(
        lambda: URL, PROJECT, clock=h.clock, sleep=traffic_flows, transport=httpx.MockTransport(prom.handle)
    )
    h.controller = RolloutController(h.store, h.deployments, readings, h.notifier, clock=h.clock, sleep=h.clock.sleep)
    return h, prom


def _srm_holds(h: Harness) -> int:
    return sum(1 for e in h.events("rollout-holding") if e["evidence"]["rule"] == "srm")


@pytest.mark.parametrize(
    ("scenario", "error_rate", "guardrails", "outcome", "rule"),
    [
        ("good candidate", {}, None, "promoted", "pass"),
        ("5xx regression", {CANDIDATE: 0.2}, None, "rolled_back", "harm"),
        (
            "app counter regression",
            {CANDIDATE: 0.2},
            [{"metric": "app:orders_failed_total/orders_total", "tolerance": 0.01}],
            "rolled_back",
            "harm",
        ),
    ],
)
def test_the_same_rollout_decides_the_same_from_envoy_and_from_prometheus(
    tmp_path: Path, scenario: str, error_rate: dict[str, float], guardrails: Any, outcome: str, rule: str
):
    policy = fast_policy(**({"guardrails": guardrails} if guardrails else {}), min_step=10.0, max_step=60.0)
    embedded = Harness(tmp_path / "envoy", policy)
    scraped, prom = prometheus_harness(tmp_path / "prom", policy)
    for h in (embedded, scraped):
        h.traffic.error_rate.update(error_rate)
        h.start()
        assert h.run_to_end() == outcome, scenario
        assert h.record().rule == rule
    assert prom.queries, "the prometheus-judged rollout read prometheus"
    # A step's first reading waits for a scrape after its weights changed: no traffic of the
    # weights before counts in a step, so the split never looks wrong (at 100 rps it would).
    assert _srm_holds(scraped) == 0
    if outcome == "promoted":
        # Every split step ends when it may (min_step, min_samples), later by at most the wait for a
        # fresh scrape at its start and the age of the scrape that ends it: two intervals.
        for a, b in zip(embedded.record().steps, scraped.record().steps, strict=True):
            assert b.ended_at - b.started_at <= a.ended_at - a.started_at + 2 * prom.interval + 1


def test_without_the_wait_for_a_fresh_scrape_a_step_counts_traffic_of_the_weights_before(tmp_path: Path):
    """What the wait is for: the step's start read from the last scrape before the weights changed."""
    h, _ = prometheus_harness(tmp_path, fast_policy(steps=[10, 50, 100], min_step=10.0, max_step=60.0))
    readings = h.controller.readings
    assert isinstance(readings, PrometheusReadings)
    stale_start = readings.read

    async def never_wait(*args: Any, fresh_after: float | None = None) -> Any:
        return await stale_start(*args)

    readings.read = never_wait  # type: ignore[method-assign]
    h.start()
    h.run_to_end()
    assert _srm_holds(h) > 0


def test_without_reading_both_versions_as_of_one_scrape_the_split_looks_wrong(tmp_path: Path, monkeypatch):
    """What the alignment is for: each version at its own latest scrape covers windows of unequal length."""

    def each_at_its_latest(series: Any, anchor: str) -> dict[str, Any]:
        return {v: aligned_traffic(series, anchor=v)[v] for v in (CANDIDATE, STABLE)}

    monkeypatch.setattr(prometheus_readings, "aligned_traffic", each_at_its_latest)
    h, _ = prometheus_harness(tmp_path, fast_policy(steps=[10, 50, 100], min_step=10.0, max_step=60.0))
    h.start()
    h.run_to_end()
    assert _srm_holds(h) > 0


def test_prometheus_unreachable_is_the_data_error_hold_then_clears(tmp_path: Path):
    h, prom = prometheus_harness(tmp_path)
    h.start()
    h.run(3)
    prom.unreachable = True
    h.run(3)
    r = h.record()
    assert r.state == RolloutState.PROGRESSING and r.holding == "data_error"
    (holding,) = [e for e in h.events() if e["kind"] == "rollout-holding"]
    assert f"prometheus: {URL}: ConnectError" in holding["message"]
    prom.unreachable = False
    h.run(1)
    assert h.record().holding is None
    assert h.run_to_end() == "promoted"


def test_prometheus_unreachable_past_max_step_never_promotes(tmp_path: Path):
    h, prom = prometheus_harness(tmp_path, fast_policy(on_no_data="fail"))
    h.start()
    prom.unreachable = True
    assert h.run_to_end() == "rolled_back"
    assert h.record().rule == "no_data"


# -- the readings source on its own ----------------------------------------------------------------------------


def _readings(handler: Any, clock: FakeClock, url: str | None = URL) -> PrometheusReadings:
    return PrometheusReadings(
        lambda: url, "echo", clock=clock, sleep=clock.sleep, transport=httpx.MockTransport(handler)
    )


def _recorded(key: str, status: int = 200) -> Any:
    return lambda request: httpx.Response(status, json=RECORDED[key]["body"])


def test_a_reading_carries_the_scrape_time_and_waits_for_a_fresh_one_at_most_two_intervals(caplog):
    canary, stable = RECORDED["canary"], RECORDED["stable"]
    clock = FakeClock(RECORDED["evaluated_at"])
    policy = RolloutPolicy()
    readings = _readings(_recorded("traffic"), clock)
    got = asyncio.run(readings.read("echo", canary, stable, policy))
    assert (got.readings.candidate.requests, got.readings.candidate.errors) == (61, 18)
    assert got.readings.candidate.ts == pytest.approx(1795837430.77)
    assert got.readings.baseline.ts == pytest.approx(1795837433.612)
    # Scrapes older than `fresh_after` (and Prometheus never scrapes again here): waits 11 s, then takes them.
    with caplog.at_level(logging.WARNING, logger="shiploop.rollout"):
        got = asyncio.run(readings.read("echo", canary, stable, policy, fresh_after=clock()))
    assert clock() == pytest.approx(RECORDED["evaluated_at"] + 11.0, abs=0.6)
    assert got.readings.candidate.requests == 61 and "the step counts from a scrape" in caplog.text


def test_errors_are_reading_unavailable_with_one_line():
    policy = RolloutPolicy()
    canary, stable = RECORDED["canary"], RECORDED["stable"]
    clock = FakeClock()

    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    cases = [
        (_readings(refused, clock), f"prometheus: {URL}: ConnectError: connection refused"),
        (_readings(_recorded("bad_query", 400), clock), 'prometheus: bad_data: invalid parameter "query"'),
        (_readings(lambda r: httpx.Response(502, text="bad gateway"), clock), "HTTP 502, not a Prometheus answer"),
        (_readings(_recorded("traffic"), clock, url=None), "no prometheus to read"),
    ]
    for readings, message in cases:
        with pytest.raises(ReadingUnavailable) as e:
            asyncio.run(readings.read("echo", canary, stable, policy))
        assert message in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ReadingUnavailable, match="no envoy request series for echo@nosuchversion"):
        asyncio.run(_readings(_recorded("traffic"), clock).read("echo", "nosuchversion", stable, policy))


def test_app_query_errors_hold_on_envoys_counts_without_the_app_counters():
    policy = RolloutPolicy.model_validate(
        {"guardrails": [{"metric": "app:app_errors_total/app_requests_total", "tolerance": 0.01}]}
    )

    def handler(request: httpx.Request) -> httpx.Response:
        if b"envoy_cluster_upstream_rq_completed" in request.content:
            return httpx.Response(200, json=RECORDED["traffic"]["body"])
        return httpx.Response(503, json={"status": "error", "errorType": "unavailable", "error": "too busy"})

    got = asyncio.run(_readings(handler, FakeClock()).read("echo", RECORDED["canary"], RECORDED["stable"], policy))
    assert got.source_errors == ("app counters: prometheus: unavailable: too busy",)
    assert got.readings.candidate.requests == 61 and got.readings.candidate.app == {}
    good = asyncio.run(
        _readings(
            lambda r: httpx.Response(200, json=RECORDED["traffic" if b"envoy_cluster" in r.content else "app"]["body"]),
            FakeClock(),
        ).read("echo", RECORDED["canary"], RECORDED["stable"], policy)
    )
    assert good.source_errors == () and good.readings.candidate.app == {
        "app_errors_total": 23.0,
        "app_requests_total": 83.0,
    }


# -- shiploop.yaml -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metrics", "error"),
    [
        (
            "{source: prometeus}",
            "metrics.source: unknown metrics source 'prometeus' (hint: did you mean 'prometheus'?)",
        ),
        ("{source: prometheus, url: 'localhost:9090'}", "metrics.url: invalid Prometheus url 'localhost:9090'"),
        ("{source: prometheus, url: 'http://h:9090/?x=1'}", "metrics.url: invalid Prometheus url"),
        ("{url: 'http://h:9090'}", "metrics.url: url only applies to source: prometheus"),
    ],
)
def test_metrics_spec_errors_are_one_line(tmp_path: Path, metrics: str, error: str):
    (tmp_path / "shiploop.yaml").write_text(f"name: p\nmetrics: {metrics}\n")
    with pytest.raises(ShiploopError) as e:
        load_project(tmp_path)
    assert error in e.value.line() and "\n" not in e.value.line()


def test_metrics_spec_defaults_to_envoy_and_takes_a_prometheus_url(tmp_path: Path):
    svc = tmp_path / "web"
    svc.mkdir()
    (svc / "service.yaml").write_text("name: web\nrun: {command: [python, app.py]}\n")
    (tmp_path / "shiploop.yaml").write_text("name: p\n")
    assert load_project(tmp_path).metrics.source == "envoy"
    (tmp_path / "shiploop.yaml").write_text(
        "name: p\nmetrics: {source: prometheus, url: 'http://127.0.0.1:9090/', scrape_interval: 15s}\n"
    )
    m = load_project(tmp_path).metrics
    assert (m.source, m.url, m.scrape_interval) == ("prometheus", "http://127.0.0.1:9090", 15.0)


def test_source_prometheus_needs_a_url_or_the_prometheus_up_runs():
    metrics = MetricsSpec(source="prometheus")
    with pytest.raises(Invalid) as e:
        check_metrics_source(metrics, prometheus_started=False)
    assert e.value.line() == (
        "shiploop.yaml: metrics.source is prometheus without a url, and no Prometheus is started "
        "(hint: run: shiploop up --prometheus; or set metrics.url in shiploop.yaml)"
    )
    check_metrics_source(metrics, prometheus_started=True)
    check_metrics_source(MetricsSpec(source="prometheus", url="http://127.0.0.1:9090"), prometheus_started=False)
    check_metrics_source(MetricsSpec(), prometheus_started=False)
