"""The ReadingSource of a running daemon: Envoy's per-cluster counters, and the apps' /metrics when asked."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from shiploop.gateway.admin import EnvoyAdmin
from shiploop.loopback import loopback_client
from shiploop.metrics.app_source import scrape_app_metrics
from shiploop.metrics.envoy_source import read_cluster_stats
from shiploop.naming import cluster_name
from shiploop.rollout.readings import Observation, Pair, Reading, ReadingUnavailable
from shiploop.spec import RolloutPolicy


class EnvoyReadings:
    def __init__(
        self,
        admin: Callable[[], EnvoyAdmin | None],
        endpoints: Callable[[str, str], list[int]],
        clock: Callable[[], float],
    ) -> None:
        self._admin = admin  # a callable: the admin client changes when Envoy is restarted
        self._endpoints = endpoints
        self._clock = clock
        self._http: httpx.AsyncClient | None = None  # made on the first app scrape

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = loopback_client(timeout=2.0)  # the replicas' /metrics
        return self._http

    async def read(
        self, service: str, candidate: str, baseline: str, policy: RolloutPolicy, fresh_after: float | None = None
    ) -> Observation:
        """Envoy first, then the apps: Envoy's counts are the evidence, the apps' add to it.

        Every reading is taken now, so it is always fresh (`fresh_after` needs nothing).
        """
        now = self._clock()
        admin = self._admin()
        if admin is None:
            raise ReadingUnavailable("envoy admin is not attached")
        clusters = {v: cluster_name(service, v) for v in (candidate, baseline)}
        try:
            traffic = await read_cluster_stats(admin, list(clusters.values()))
        except httpx.HTTPError as e:
            raise ReadingUnavailable(f"envoy stats: {type(e).__name__}") from e
        missing = [c for c in clusters.values() if c not in traffic]
        if missing:
            raise ReadingUnavailable(f"envoy has no stats for {', '.join(missing)}")
        wants_app = any(m.kind == "app_ratio" for m in [*policy.guardrails, *policy.limits])
        errors: list[str] = []
        out: dict[str, Reading] = {}
        for version, cluster in clusters.items():
            app: dict[str, float] = {}
            if wants_app:
                scrape = await scrape_app_metrics(self._client(), self._endpoints(service, version))
                errors.extend(f"{version}: {e}" for e in scrape.errors)
                app = scrape.counters
            t = traffic[cluster]
            out[version] = Reading(now, t.requests, t.errors_5xx, tuple(t.latency_buckets), app)
        pair = Pair(out[candidate], out[baseline])
        if errors:
            # A sum over the replicas that answered is lower than the true count and would
            # read as a counter reset (lost evidence); judge on Envoy's counts alone and hold.
            pair = Pair(pair.candidate.without_app(), pair.baseline.without_app())
        return Observation(pair, tuple(errors))
