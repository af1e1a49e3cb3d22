"""A ReadingSource that reads the rollout's counts from Prometheus (`metrics: {source: prometheus}`).

The same counters as the embedded reader (EnvoyReadings), as Prometheus
scraped them from Envoy's stats listener and the replicas' /metrics
(metrics.prometheus_counts): cumulative values, so the record, the deltas, the
counter-reset rules and the verdicts work as with Envoy's own. Two differences:

- counts are as of a recent scrape (up to two scrape intervals old: both
  versions are read as of the baseline's latest scrape, see
  metrics.prometheus_counts); each Reading's `ts` is its scrape's time, not
  the time of the read;
- a step's first reading must not count traffic from before its weights
  changed, so with `fresh_after` the read waits (polling every 0.5 s) until
  both versions were scraped after that moment, at most two scrape intervals
  and a second; then it takes what there is (and logs it).

Prometheus unreachable, an error answer, or no series for a version is
ReadingUnavailable: the controller's `data_error` hold, never zero traffic.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import httpx

from shiploop.metrics.prometheus_api import PrometheusClient, PrometheusQueryError
from shiploop.metrics.prometheus_counts import AppCounts, aligned_traffic, app_query, parse_app, traffic_query
from shiploop.rollout.readings import Observation, Pair, Reading, ReadingUnavailable
from shiploop.spec import RolloutPolicy

POLL_S = 0.5
log = logging.getLogger("shiploop.rollout")


def app_counter_names(policy: RolloutPolicy) -> list[str]:
    """The app counters the policy's guardrails and limits divide."""
    names: set[str] = set()
    for m in [*policy.guardrails, *policy.limits]:
        if m.kind == "app_ratio" and m.numerator and m.denominator:
            names.update((m.numerator, m.denominator))
    return sorted(names)


class PrometheusReadings:
    def __init__(
        self,
        url: Callable[[], str | None],
        project: str,
        clock: Callable[[], float],
        scrape_interval_s: float = 5.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._url = url  # a callable: the Prometheus `up --prometheus` runs gets its address after we are made
        self._project = project
        self._clock = clock
        self._sleep = sleep
        self.max_wait_s = 2 * scrape_interval_s + 1.0
        self.window_s = 3 * scrape_interval_s  # the raw samples asked for: two scrapes of each version at least
        self._transport = transport  # tests replay recorded answers through one
        self._http: httpx.AsyncClient | None = None

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    def _client(self) -> PrometheusClient:
        url = self._url()
        if url is None:
            raise ReadingUnavailable("no prometheus to read: it is not running (see: shiploop status)")
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=2.0, transport=self._transport)
        return PrometheusClient(self._http, url)

    async def read(
        self, service: str, candidate: str, baseline: str, policy: RolloutPolicy, fresh_after: float | None = None
    ) -> Observation:
        if fresh_after is None:
            return await self._read_once(service, candidate, baseline, policy)
        deadline = fresh_after + self.max_wait_s
        while True:
            try:
                observed = await self._read_once(service, candidate, baseline, policy)
            except ReadingUnavailable:
                if self._clock() >= deadline:
                    raise
            else:
                oldest = min(observed.readings.candidate.ts, observed.readings.baseline.ts)
                if oldest >= fresh_after:
                    return observed
                if self._clock() >= deadline:
                    log.warning(
                        "%s: no scrape of both versions in the %.0f s since the weights changed; "
                        "the step counts from a scrape %.1f s before",
                        service,
                        self.max_wait_s,
                        fresh_after - oldest,
                    )
                    return observed
            await self._sleep(POLL_S)

    async def _read_once(self, service: str, candidate: str, baseline: str, policy: RolloutPolicy) -> Observation:
        client = self._client()
        versions = [candidate, baseline]
        try:
            answer = await client.query(traffic_query(self._project, service, versions, self.window_s))
            traffic = aligned_traffic(answer, anchor=baseline)
        except PrometheusQueryError as e:
            raise ReadingUnavailable(f"prometheus: {e}") from e
        missing = [v for v in versions if v not in traffic]
        if missing:
            which = ", ".join(f"{service}@{v}" for v in missing)
            raise ReadingUnavailable(f"prometheus has no envoy request series for {which} (not scraped yet?)")
        names = app_counter_names(policy)
        app = AppCounts({})
        errors: list[str] = []
        if names:
            try:
                app = parse_app(await client.query(app_query(self._project, service, versions, names)))
            except PrometheusQueryError as e:
                errors.append(f"app counters: prometheus: {e}")
            errors.extend(app.down)
        out: dict[str, Reading] = {}
        for v in versions:
            t = traffic[v]
            counters = {} if errors else app.counters.get(v, {})
            out[v] = Reading(
                t.sampled_at, t.traffic.requests, t.traffic.errors_5xx, t.traffic.latency_buckets, dict(counters)
            )
        # As the embedded reader: with app errors the app counters are left out (a partial sum
        # would read as a counter reset), the Envoy counts are judged and the rollout holds.
        return Observation(Pair(out[candidate], out[baseline]), tuple(errors))
