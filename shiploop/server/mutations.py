"""Changes to desired state: deploy, weights, personal routes, promote, rollback.

Every mutation runs under the context's lock and is one transaction: it builds
the state it leads to in memory, publishes that, and writes the store only once
Envoy has accepted it (`PlaneContext.commit`). A deploy starts its replicas and
waits for them before anything else changes; if any step fails, the replicas it
started are stopped and nothing else has moved (store, weights, the canary it
would replace).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx

from shiploop.errors import Conflict, Invalid, NotFound, ShiploopError
from shiploop.naming import DeploymentState, Track, cluster_name
from shiploop.server.context import PlaneContext
from shiploop.server.desired import Change
from shiploop.server.specs import run_config, spec_to_json
from shiploop.spec import check_header_name, check_header_value
from shiploop.store import DeploymentRow

DRAIN_TIMEOUT_S = 10.0


class Mutations:
    def __init__(self, ctx: PlaneContext) -> None:
        self.ctx = ctx

    async def deploy(self, service: str, weight: int = 0, track: Track = Track.CANARY) -> dict[str, Any]:
        ctx = self.ctx
        if not 0 <= weight <= 100:
            raise Invalid(f"weight {weight} is out of range", hint="give a percentage from 0 to 100")
        spec = ctx.service(service)
        async with ctx.lock:
            stable = ctx.track(service, Track.STABLE)
            version, vspec = ctx.snapshot(spec)
            if version.id == stable.version:
                raise Invalid(
                    f"{service}@{version.id} is already stable: nothing changed",
                    hint="change the service's code or service.yaml, then deploy",
                )
            deployed = {d.version: d for d in ctx.store.deployments(service)}
            previous = ctx.find_track(service, track)
            same = deployed.get(version.id)
            if same is not None and same.track != track:
                raise Conflict(
                    f"{service}@{version.id} is deployed as {same.track} already",
                    hint=f"wait until it has stopped (see: shiploop status), then: shiploop deploy {service}",
                )
            started = same is None
            if started:
                try:
                    ctx.runtime.start(service, version.id, run_config(vspec), vspec.replicas)
                    await ctx.runtime.wait_ready(service, version.id, ctx.ready_timeout_s)
                except BaseException:
                    await self._discard(service, version.id)
                    raise
            elif weight > 0:
                self._require_ready(service, version.id)

            change = ctx.change()
            replaced = [previous.version] if previous is not None and previous.version != version.id else []
            for old in replaced:
                change.set_track(service, old, Track.RETIRING, 0, state=DeploymentState.DRAINING)
            if started:
                change.upsert(
                    DeploymentRow(
                        service,
                        version.id,
                        track,
                        0,
                        vspec.replicas,
                        spec_to_json(vspec),
                        DeploymentState.RUNNING,
                        ctx.clock(),
                    )
                )
            if track != Track.SHADOW:
                change.set_weights(service, {stable.version: 100 - weight, version.id: weight})
            try:
                gen = await ctx.commit(change)
            except BaseException:
                if started:
                    await self._discard(service, version.id)
                raise
            for old in replaced:
                ctx.event(service, "retired", f"{service}@{old} replaced by a newer {track}")
                ctx.in_background(self._drain_and_stop(service, old))
            ctx.event(
                service,
                "deployed",
                f"{service}@{version.id} as {track} at {weight}%",
                {"version": version.id, "track": track, "weight": weight, "generation": gen},
            )
            return {
                "service": service,
                "version": version.id,
                "track": track,
                "weight": weight,
                "created": version.created,
            }

    async def _discard(self, service: str, version: str) -> None:
        """Undo a deploy that did not finish: stop what it started and forget its replica records."""
        await self.ctx.runtime.stop(service, version)
        # The version has no deployment row (it was never committed): this only drops replica rows.
        self.ctx.store.remove_deployment(service, version)

    def _require_ready(self, service: str, version: str) -> None:
        ready, total = self.ctx.runtime.counts(service, version)
        if ready == 0:
            raise Conflict(
                f"{service}@{version} has no ready replica ({ready}/{total}): it would answer every request with 503",
                hint=f"see why: shiploop logs {service} --version {version}; or remove it: shiploop rollback {service}",
            )

    async def set_weights(self, service: str, requested: dict[str, int]) -> dict[str, int]:
        ctx = self.ctx
        ctx.require_service(service)
        async with ctx.lock:
            deployed = [d for d in ctx.store.deployments(service) if d.track in (Track.STABLE, Track.CANARY)]
            weights: dict[str, int] = {}
            for ref, w in requested.items():
                if not 0 <= w <= 100:
                    raise Invalid(f"weight {ref}={w} is out of range", hint="weights are percentages from 0 to 100")
                target = ctx.resolve(service, ref)
                if target.track not in (Track.STABLE, Track.CANARY):
                    raise Conflict(
                        f"{service}@{target.version} is {target.track}: it takes no weighted traffic",
                        hint="see the versions with: shiploop status",
                    )
                weights[target.version] = w
            total = sum(weights.values())
            rest = [d.version for d in deployed if d.version not in weights]
            if total > 100:
                raise Invalid(f"weights add up to {total}, over 100", hint="give weights that add up to 100")
            if len(rest) == 1:
                weights[rest[0]] = 100 - total
            elif total != 100:
                raise Invalid(
                    f"weights add up to {total}, not 100",
                    hint=f"give a weight for each of: {', '.join(rest)}" if rest else "give weights that add up to 100",
                )
            else:
                weights.update({v: 0 for v in rest})
            change = ctx.change()
            change.set_weights(service, weights)
            gen = await ctx.commit(change)
            ctx.event(
                service,
                "weights",
                ", ".join(f"{v}={w}" for v, w in weights.items()),
                {"weights": weights, "generation": gen},
            )
            return weights

    async def set_header_route(self, service: str, header: str, value: str, ref: str) -> dict[str, str]:
        ctx = self.ctx
        ctx.require_service(service)
        header = check_header_name(header)
        value = check_header_value(value)
        async with ctx.lock:
            target = ctx.resolve(service, ref)
            if target.track == Track.RETIRING:
                raise Conflict(f"{service}@{target.version} is retiring", hint="see the versions with: shiploop status")
            change = ctx.change()
            change.set_header_route(service, header, value, target.version)
            await ctx.commit(change)
            ctx.event(service, "header-route", f"{header}: {value} -> {target.version}")
            return {"header": header, "value": value, "version": target.version}

    async def remove_header_route(self, service: str, header: str, value: str | None) -> int:
        ctx = self.ctx
        ctx.require_service(service)
        async with ctx.lock:
            change = ctx.change()
            removed = change.remove_header_route(service, header, value)
            if removed == 0:
                raise NotFound(
                    f"{service} has no header route on '{header}'", hint="see the header routes with: shiploop status"
                )
            await ctx.commit(change)
            ctx.event(service, "header-route-removed", f"{header}{': ' + value if value else ''}")
            return removed

    async def promote(self, service: str, reason: str = "manual promote") -> dict[str, Any]:
        """The canary (or the shadow of a dark launch) becomes stable; the old stable drains and stops."""
        ctx = self.ctx
        ctx.require_service(service)
        async with ctx.lock:
            candidate = ctx.find_track(service, Track.CANARY) or ctx.find_track(service, Track.SHADOW)
            if candidate is None:
                raise NotFound(f"{service} has no canary to promote", hint=f"deploy one: shiploop deploy {service}")
            stable = ctx.track(service, Track.STABLE)
            self._require_ready(service, candidate.version)

            def candidate_becomes_stable(change: Change) -> None:
                change.set_track(service, candidate.version, Track.STABLE, 100)
                ctx.record_stable(service, candidate.version, change)

            gen = await self._retire(service, [stable.version], None, also=candidate_becomes_stable)
            ctx.event(
                service,
                "promoted",
                f"{service}@{candidate.version} is stable ({reason})",
                {"version": candidate.version, "previous": stable.version, "generation": gen},
            )
        return {"service": service, "stable": candidate.version, "retired": stable.version}

    async def rollback(self, service: str, reason: str = "manual rollback") -> dict[str, Any]:
        ctx = self.ctx
        ctx.require_service(service)
        async with ctx.lock:
            stable = ctx.track(service, Track.STABLE)
            others = [d.version for d in ctx.store.deployments(service) if d.track in (Track.CANARY, Track.SHADOW)]
            if not others:
                raise NotFound(f"{service} has no canary to roll back", hint="see: shiploop status")

            def all_traffic_to_stable(change: Change) -> None:
                # Stable has stayed fully scaled, so it takes everything at once.
                change.set_weights(service, {stable.version: 100})

            gen = await self._retire(service, others, None, also=all_traffic_to_stable)
            ctx.event(
                service,
                "rolled-back",
                f"all traffic to {service}@{stable.version} ({reason})",
                {"stable": stable.version, "stopped": others, "generation": gen},
            )
        return {"service": service, "stable": stable.version, "stopped": others}

    async def _retire(
        self, service: str, versions: list[str], why: str | None, also: Callable[[Change], None] = lambda _: None
    ) -> int:
        """Take versions out of the routes (with `also`'s changes, as one change), publish,
        and drain and stop them in the background. Call under the lock."""
        ctx = self.ctx
        change = ctx.change()
        also(change)
        for version in versions:
            change.set_track(service, version, Track.RETIRING, 0, state=DeploymentState.DRAINING)
        gen = await ctx.commit(change)
        for version in versions:
            if why is not None:
                ctx.event(service, "retired", f"{service}@{version} {why}")
            ctx.in_background(self._drain_and_stop(service, version))
        return gen

    async def _drain_and_stop(self, service: str, version: str) -> None:
        """Wait until Envoy has no request in flight to the version, then stop it."""
        ctx = self.ctx
        stat = f"cluster.{cluster_name(service, version)}.upstream_rq_active"
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while time.monotonic() < deadline:
            # Read the admin each time: Envoy may be restarted while the version drains.
            admin = ctx.gateway.admin
            try:
                active = 0 if admin is None else (await admin.stats(f"^{stat}$".replace(".", r"\."))).get(stat, 0)
            except httpx.HTTPError:
                active = 1  # not known: a restarted Envoy has nothing in flight, so wait for it to answer
            if active == 0:
                break
            await asyncio.sleep(0.1)
        await ctx.runtime.stop(service, version)
        async with ctx.lock:
            change = ctx.change()
            change.remove_deployment(service, version)
            try:
                await ctx.commit(change)
            except ShiploopError as e:
                # The row stays (as retiring, weight 0, out of every route); the next
                # change or the supervisor's prune publishes without it.
                ctx.event(service, "error", f"removing {service}@{version}: {e.line()}")
