"""Live per-version traffic for `status`: the metrics sampler fed with every deployment, once a second."""

from __future__ import annotations

import time
from typing import Any

from shiploop.analysis import bucket_quantile
from shiploop.loopback import loopback_client
from shiploop.metrics.sampler import MetricsSampler, Target
from shiploop.naming import cluster_name
from shiploop.server.controlplane import ControlPlane

WINDOW_S = 10.0
SERIES_S = 900.0  # the dashboard charts the last 15 minutes (server/traffic_series.py)


class Observer:
    def __init__(self, cp: ControlPlane, clock: Any = time.time) -> None:
        self.cp = cp
        self.clock = clock
        self._http = loopback_client(timeout=1.0)  # the apps' /metrics
        self.sampler = MetricsSampler(lambda: cp.gateway.admin, self._http, retention_s=SERIES_S)
        self._last = 0.0

    async def close(self) -> None:
        await self._http.aclose()

    async def tick(self) -> None:
        now = self.clock()
        if now - self._last < 1.0:
            return
        self._last = now
        targets = [
            Target(
                d.service,
                d.version,
                cluster_name(d.service, d.version),
                self.cp.runtime.endpoints(d.service, d.version),
            )
            for d in self.cp.store.deployments()
        ]
        await self.sampler.sample(now, targets)

    def summary(self, service: str, version: str) -> dict[str, Any] | None:
        """Requests per second, error rate and p95 over the last WINDOW_S, and what could not be read."""
        delta = self.sampler.delta(service, version, self.clock() - WINDOW_S)
        if delta is None or delta.since_ts is None:
            return None
        seconds = max(delta.ts - delta.since_ts, 1e-9)
        t = delta.traffic
        return {
            "rps": round(t.requests / seconds, 1),
            "error_rate": t.errors_5xx / t.requests if t.requests else None,
            "p95_ms": bucket_quantile(t.latency_buckets, 0.95),
            "window_s": round(seconds, 1),
            "source_errors": list(delta.errors[-3:]),
        }
