"""Publishes routing state to Envoy through files, and confirms Envoy took it.

Each publish writes a new generation directory and swaps the `current` symlink
with one rename (atomic for Envoy's directory watch). A change that adds
clusters is published in two generations: first the clusters beside the live
routes, then the routes that name them, so no request meets a route to a
cluster Envoy does not know yet. Clusters the live routes stop naming stay one
generation longer (in-flight requests finish) and are pruned by the next publish.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

from shiploop.errors import GatewayRejected, GatewayTimeout, Unavailable
from shiploop.gateway import render
from shiploop.gateway.admin import EnvoyAdmin, rejection_reason
from shiploop.gateway.model import PublishResult, RoutingState

_ACCEPT_TIMEOUT_S = 10.0
_KEEP_GENERATIONS = 4
_STAT_PATTERN = (
    r"^(cluster_manager\.cds|listener_manager\.lds|http\.gateway\.rds\.gateway)\.(version_text|update_rejected)$"
    r"|^cluster_manager\.warming_clusters$"
)


class EnvoyUnreachable(Unavailable):
    """Envoy's admin API stopped answering (Envoy died or is being restarted)."""


class Publisher:
    def __init__(self, xds_dir: Path, envoy_log: Path | None = None) -> None:
        self.xds_dir = xds_dir
        self.envoy_log = envoy_log
        self.admin: EnvoyAdmin | None = None
        self.live: RoutingState | None = None
        self.rejections = 0  # generations Envoy rejected since this daemon started
        self._lock = asyncio.Lock()
        xds_dir.mkdir(parents=True, exist_ok=True)
        self.generation = self._last_generation_on_disk()

    def attach(self, admin: EnvoyAdmin) -> None:
        """From now on, every publish waits for this Envoy to accept it."""
        self.admin = admin

    @property
    def needs_prune(self) -> bool:
        return self.live is not None and self.live.cluster_names() != self.live.referenced_clusters()

    async def publish(self, desired: RoutingState) -> PublishResult:
        async with self._lock:
            started = time.monotonic()
            live = self.live
            try:
                desired = await self._publish(live, desired)
            except (GatewayRejected, GatewayTimeout, Unavailable) as e:
                # All or nothing: the files go back to what Envoy served before this
                # publish (also undoing a first phase Envoy had already taken).
                self.live = live
                await self._restore_last_good(wait=isinstance(e, GatewayRejected))
                raise
            self.live = desired
            return PublishResult(self.generation, True, time.monotonic() - started)

    async def _publish(self, live: RoutingState | None, desired: RoutingState) -> RoutingState:
        """Write and confirm `desired` (in two phases when it adds clusters); the state now live."""
        if live is None:
            await self._apply(desired)
            return desired
        # Keep the clusters the live routes still use, so they stay valid
        # until the new routes are in.
        still_named = live.referenced_clusters()
        keep = {c.name: c for c in live.clusters if c.name in still_named}
        keep.update({c.name: c for c in desired.clusters})
        staged = replace(desired, clusters=tuple(keep[n] for n in sorted(keep)))
        if set(staged.clusters) != set(live.clusters):
            await self._apply(replace(live, clusters=staged.clusters))
            self.live = replace(live, clusters=staged.clusters)
        await self._apply(staged)
        return staged

    async def rewrite_live(self) -> int:
        """Point `current` at a fresh copy of the last accepted state, unconfirmed
        (Envoy is down): a restarted Envoy starts from it."""
        async with self._lock:
            if self.live is None:
                return self.generation
            return self._write(self.live)

    async def confirm_current(self) -> None:
        """Wait until the attached Envoy serves the generation `current` points at."""
        async with self._lock:
            await self._confirm(self.generation, 0)

    # -- files -------------------------------------------------------------

    def _last_generation_on_disk(self) -> int:
        gens = [int(p.name[4:]) for p in self.xds_dir.glob("gen-*") if p.name[4:].isdigit()]
        return max(gens, default=0)

    def _write(self, state: RoutingState) -> int:
        self.generation += 1
        version = str(self.generation)
        gen_dir = self.xds_dir / f"gen-{self.generation:06d}"
        gen_dir.mkdir(parents=True, exist_ok=False)
        files = {
            "cds.json": render.discovery_response(version, [render.cluster(c) for c in state.clusters]),
            "lds.json": render.discovery_response(version, [render.listener(state, self.xds_dir)]),
            "rds.json": render.discovery_response(version, [render.route_configuration(state)]),
        }
        for name, body in files.items():
            # Compact JSON: indenting switches Python to its slow encoder (7x at 1,000 services).
            (gen_dir / name).write_text(json.dumps(body, separators=(",", ":")))
        self._point_current_at(gen_dir.name)
        self._remove_old_generations()
        return self.generation

    def _point_current_at(self, name: str) -> None:
        tmp = self.xds_dir / ".current.tmp"
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(name, tmp)
        os.rename(tmp, self.xds_dir / "current")

    def _remove_old_generations(self) -> None:
        gens = sorted(p for p in self.xds_dir.glob("gen-*") if p.is_dir())
        for old in gens[:-_KEEP_GENERATIONS]:
            shutil.rmtree(old, ignore_errors=True)

    # -- acceptance -----------------------------------------------------------

    async def _apply(self, state: RoutingState) -> int:
        """Write one generation and wait until Envoy serves it (if an Envoy is attached).

        An admin API that stops answering raises EnvoyUnreachable (from _stats)."""
        before = await self._rejections() if self.admin else 0
        gen = self._write(state)
        if self.admin is not None:
            await self._confirm(gen, before)
        return gen

    async def _confirm(self, gen: int, before: int) -> None:
        assert self.admin is not None
        want = str(gen)
        deadline = time.monotonic() + _ACCEPT_TIMEOUT_S
        delay = 0.002
        while True:
            stats = await self._stats(gen)
            versions = [stats.get(f"{p}.version_text") for p in ("cluster_manager.cds", "http.gateway.rds.gateway")]
            if all(v == want for v in versions) and stats.get("cluster_manager.warming_clusters", 0) == 0:
                return
            rejected = sum(int(v) for k, v in stats.items() if k.endswith("update_rejected"))
            if rejected > before:
                self.rejections += 1
                raise GatewayRejected(
                    f"envoy rejected routing generation {gen}: {self._reason()}",
                    hint="nothing was changed and the previous routes keep serving; see: shiploop status",
                )
            if time.monotonic() > deadline:
                # Envoy may still apply it later: publish() points the files back at
                # what it served before, so Envoy ends up serving that and nothing else.
                raise GatewayTimeout(
                    f"envoy did not apply routing generation {gen} within {_ACCEPT_TIMEOUT_S:.0f}s; "
                    "nothing was changed",
                    hint=f"see the envoy log at {self.envoy_log}",
                )
            # Envoy answers /stats on the thread that applies config: back off
            # from 2 ms so a large config is not slowed by our own polling.
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.025)

    async def _stats(self, gen: int) -> dict[str, Any]:
        assert self.admin is not None
        try:
            return await self.admin.stats(_STAT_PATTERN)
        except httpx.HTTPError as e:
            raise EnvoyUnreachable(
                f"envoy stopped answering while applying routing generation {gen} ({type(e).__name__})",
                hint="the supervisor restarts envoy within seconds; check with: shiploop status",
            ) from None

    async def _rejections(self) -> int:
        stats = await self._stats(self.generation + 1)
        return sum(int(v) for k, v in stats.items() if k.endswith("update_rejected"))

    def _reason(self) -> str:
        if self.envoy_log is None or not self.envoy_log.exists():
            return "no reason available"
        with open(self.envoy_log, "rb") as f:
            f.seek(max(0, f.seek(0, 2) - 20000))
            tail = f.read().decode(errors="replace")
        return rejection_reason(tail) or "no reason in the envoy log"

    async def _restore_last_good(self, wait: bool) -> None:
        # Point `current` back at the last accepted generation, so an Envoy
        # restart loads good config; Envoy itself still serves it already.
        if self.live is None:
            return
        good = self._write(self.live)
        if not wait or self.admin is None:
            return
        deadline = time.monotonic() + _ACCEPT_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                stats = await self.admin.stats(_STAT_PATTERN)
            except httpx.HTTPError:
                return
            if stats.get("cluster_manager.cds.version_text") == str(good):
                return
            await asyncio.sleep(0.01)
