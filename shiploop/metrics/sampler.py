"""Per-version metrics read every second and kept as monotone totals plus a short history.

The daemon calls `sample(now, targets)` once a second. For each (service,
version) the sampler keeps cumulative totals that never go down (resets are
handled in `counters`) and a history of snapshots over `retention_s`, so the
rollout controller can ask for the counts since any moment in that window.
A reading that failed (Envoy admin down, cluster unknown, a replica not
answering) leaves the totals where they were and is recorded as an error on
the snapshot. Such a snapshot, and any delta whose window holds one, has
`ok=False`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import httpx

from shiploop.gateway.admin import EnvoyAdmin
from shiploop.metrics.app_source import AppScrape, scrape_app_metrics
from shiploop.metrics.counters import ReplicaCounters, advance_traffic, diff_traffic
from shiploop.metrics.envoy_source import VersionTraffic, read_cluster_stats


@dataclass(frozen=True)
class Target:
    service: str
    version: str
    cluster: str
    ports: Sequence[int]
    metrics_path: str | None = "/metrics"  # None: the app exposes no metrics, read Envoy only


@dataclass(frozen=True)
class VersionSnapshot:
    ts: float
    traffic: VersionTraffic
    app: dict[str, float]
    errors: tuple[str, ...] = ()
    resets: int = 0  # counter resets seen (cumulative in a snapshot, within the window in a delta)
    since_ts: float | None = None  # a delta's actual start: the ts of the snapshot it counts from

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass
class _VersionState:
    traffic: VersionTraffic = VersionTraffic()
    raw_traffic: VersionTraffic | None = None
    app: dict[str, float] = field(default_factory=dict)
    replicas: ReplicaCounters = field(default_factory=ReplicaCounters.empty)
    resets: int = 0
    history: deque[VersionSnapshot] = field(default_factory=deque)


AdminSource = EnvoyAdmin | Callable[[], EnvoyAdmin | None]


class MetricsSampler:
    def __init__(self, admin: AdminSource, http: httpx.AsyncClient, retention_s: float = 900.0) -> None:
        # A callable lets the daemon hand over `lambda: gateway.admin`, which changes when Envoy is re-adopted.
        self._admin: Callable[[], EnvoyAdmin | None] = admin if callable(admin) else (lambda: admin)
        self._http = http
        self.retention_s = retention_s
        self._states: dict[tuple[str, str], _VersionState] = {}

    async def sample(self, now: float, targets: Sequence[Target]) -> None:
        (traffic, envoy_error), scrapes = await asyncio.gather(
            self._read_envoy([t.cluster for t in targets]), asyncio.gather(*(self._scrape(t) for t in targets))
        )
        for t, scrape in zip(targets, scrapes, strict=True):
            self._record(now, t, traffic.get(t.cluster), envoy_error, scrape)
        self._forget_before(now - self.retention_s)

    async def _read_envoy(self, clusters: list[str]) -> tuple[dict[str, VersionTraffic], str | None]:
        admin = self._admin()
        if admin is None:
            return {}, "envoy: the gateway is not running"
        try:
            return await read_cluster_stats(admin, clusters), None
        except (httpx.HTTPError, ValueError, KeyError) as e:
            return {}, f"envoy admin at {admin.address}: {str(e) or type(e).__name__}"

    async def _scrape(self, t: Target) -> AppScrape:
        if t.metrics_path is None:
            return AppScrape({}, [])
        if not t.ports:
            return AppScrape({}, [f"no ready replica to scrape {t.metrics_path} from"])
        return await scrape_app_metrics(self._http, list(t.ports), t.metrics_path)

    def _record(
        self, now: float, t: Target, raw: VersionTraffic | None, envoy_error: str | None, scrape: AppScrape
    ) -> None:
        st = self._states.setdefault((t.service, t.version), _VersionState())
        errors: list[str] = []
        if envoy_error is not None:
            errors.append(envoy_error)
        elif raw is None:
            errors.append(f"envoy has no stats for cluster {t.cluster}")
        else:
            st.traffic, reset = advance_traffic(st.traffic, st.raw_traffic, raw)
            st.raw_traffic = raw
            st.resets += reset
        errors.extend(scrape.errors)
        st.resets += st.replicas.advance(st.app, now, scrape.per_replica)
        st.history.append(VersionSnapshot(now, st.traffic, dict(st.app), tuple(errors), st.resets))
        # Keep one snapshot at or before the window's start, so a delta over the whole window has a base.
        while len(st.history) >= 2 and st.history[1].ts <= now - self.retention_s:
            st.history.popleft()

    def _forget_before(self, cutoff: float) -> None:
        for key in [k for k, st in self._states.items() if st.history[-1].ts < cutoff]:
            del self._states[key]
        for st in self._states.values():
            st.replicas.forget_before(cutoff)

    def snapshot(self, service: str, version: str) -> VersionSnapshot | None:
        """The latest cumulative snapshot, or None if the version was never sampled."""
        st = self._states.get((service, version))
        return st.history[-1] if st else None

    def delta(self, service: str, version: str, since_ts: float) -> VersionSnapshot | None:
        """Counts from the latest snapshot at or before `since_ts` (or the oldest kept) to the latest one.

        `since_ts` on the result says where the window really starts. The errors
        are those of every snapshot in the window, its base included: a failed
        reading there means some counts may belong to the wrong side of it.
        """
        st = self._states.get((service, version))
        if st is None:
            return None
        history = list(st.history)
        base_idx = 0
        for i in range(len(history) - 1, -1, -1):
            if history[i].ts <= since_ts:
                base_idx = i
                break
        base, latest = history[base_idx], history[-1]
        errors: dict[str, None] = {}
        for snap in history[base_idx:]:
            errors.update(dict.fromkeys(snap.errors))
        app = {name: max(0.0, v - base.app.get(name, 0.0)) for name, v in latest.app.items()}
        return VersionSnapshot(
            latest.ts,
            diff_traffic(latest.traffic, base.traffic),
            app,
            tuple(errors),
            latest.resets - base.resets,
            since_ts=base.ts,
        )

    def source_errors(self, service: str) -> list[str]:
        """The errors of the latest reading of every version of `service`, each prefixed service@version."""
        out: list[str] = []
        for (svc, version), st in sorted(self._states.items()):
            if svc == service:
                out.extend(f"{svc}@{version}: {e}" for e in st.history[-1].errors)
        return out

    def history(self, service: str, version: str) -> list[VersionSnapshot]:
        """Every snapshot kept for a version, oldest first (the dashboard's charts)."""
        st = self._states.get((service, version))
        return list(st.history) if st else []

    def versions(self, service: str) -> list[str]:
        return sorted(v for (s, v) in self._states if s == service)
