"""Changes to desired state: deploy, weights, personal routes, promote, rollback.

Every mutation runs under the context's lock, writes the store, then publishes,
and returns only after Envoy has accepted the new routes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from shiploop.errors import Invalid, NotFound, ShiploopError
from shiploop.naming import DeploymentState, Track, cluster_name
from shiploop.server.context import PlaneContext
from shiploop.server.specs import run_config, spec_to_json
from shiploop.store import DeploymentRow

READY_TIMEOUT_S = 30.0
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
            previous = ctx.find_track(service, track)
            if previous is not None and previous.version != version.id:
                await self._retire(service, [previous.version], f"replaced by a newer {track}")
            if previous is None or previous.version != version.id:
                ctx.store.upsert_deployment(
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
                ctx.runtime.start(service, version.id, run_config(vspec), vspec.replicas)
            try:
                await ctx.runtime.wait_ready(service, version.id, READY_TIMEOUT_S)
            except ShiploopError:
                await ctx.runtime.stop(service, version.id)
                ctx.store.remove_deployment(service, version.id)
                raise
            if track != Track.SHADOW:
                ctx.store.set_weights(service, {stable.version: 100 - weight, version.id: weight})
            gen = await ctx.publish()
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

    async def set_weights(self, service: str, requested: dict[str, int]) -> dict[str, int]:
        ctx = self.ctx
        ctx.service(service)
        async with ctx.lock:
            deployed = [d for d in ctx.store.deployments(service) if d.track != Track.SHADOW]
            weights: dict[str, int] = {}
            for ref, w in requested.items():
                if not 0 <= w <= 100:
                    raise Invalid(f"weight {ref}={w} is out of range", hint="weights are percentages from 0 to 100")
                weights[ctx.resolve(service, ref).version] = w
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
            ctx.store.set_weights(service, weights)
            gen = await ctx.publish()
            ctx.event(
                service,
                "weights",
                ", ".join(f"{v}={w}" for v, w in weights.items()),
                {"weights": weights, "generation": gen},
            )
            return weights

    async def set_header_route(self, service: str, header: str, value: str, ref: str) -> dict[str, str]:
        ctx = self.ctx
        ctx.service(service)
        async with ctx.lock:
            target = ctx.resolve(service, ref)
            ctx.store.set_header_route(service, header, value, target.version)
            await ctx.publish()
            ctx.event(service, "header-route", f"{header}: {value} -> {target.version}")
            return {"header": header.lower(), "value": value, "version": target.version}

    async def remove_header_route(self, service: str, header: str, value: str | None) -> int:
        ctx = self.ctx
        ctx.service(service)
        async with ctx.lock:
            removed = ctx.store.remove_header_route(service, header, value)
            if removed == 0:
                raise NotFound(
                    f"{service} has no header route on '{header}'", hint="see the header routes with: shiploop status"
                )
            await ctx.publish()
            ctx.event(service, "header-route-removed", f"{header}{': ' + value if value else ''}")
            return removed

    async def promote(self, service: str, reason: str = "manual promote") -> dict[str, Any]:
        """The canary (or the shadow of a dark launch) becomes stable; the old stable drains and stops."""
        ctx = self.ctx
        ctx.service(service)
        async with ctx.lock:
            candidate = ctx.find_track(service, Track.CANARY) or ctx.find_track(service, Track.SHADOW)
            if candidate is None:
                raise NotFound(f"{service} has no canary to promote", hint=f"deploy one: shiploop deploy {service}")
            stable = ctx.track(service, Track.STABLE)

            def candidate_becomes_stable() -> None:
                ctx.store.set_track(service, candidate.version, Track.STABLE, 100)

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
        ctx.service(service)
        async with ctx.lock:
            stable = ctx.track(service, Track.STABLE)
            others = [d.version for d in ctx.store.deployments(service) if d.track in (Track.CANARY, Track.SHADOW)]
            if not others:
                raise NotFound(f"{service} has no canary to roll back", hint="see: shiploop status")

            def all_traffic_to_stable() -> None:
                # Stable has stayed fully scaled, so it takes everything at once.
                ctx.store.set_weights(service, {stable.version: 100})

            gen = await self._retire(service, others, None, also=all_traffic_to_stable)
            ctx.event(
                service,
                "rolled-back",
                f"all traffic to {service}@{stable.version} ({reason})",
                {"stable": stable.version, "stopped": others, "generation": gen},
            )
        return {"service": service, "stable": stable.version, "stopped": others}

    async def _retire(
        self, service: str, versions: list[str], why: str | None, also: Callable[[], None] = lambda: None
    ) -> int:
        """Take versions out of the routes (with `also`'s store changes, in one transaction),
        publish, and drain and stop them in the background. Call under the lock."""
        ctx = self.ctx
        with ctx.store.transaction():
            also()
            for version in versions:
                ctx.store.set_track(service, version, Track.RETIRING, 0, state=DeploymentState.DRAINING)
        gen = await ctx.publish()
        for version in versions:
            if why is not None:
                ctx.event(service, "retired", f"{service}@{version} {why}")
            ctx.in_background(self._drain_and_stop(service, version))
        return gen

    async def _drain_and_stop(self, service: str, version: str) -> None:
        """Wait until Envoy has no request in flight to the version, then stop it."""
        ctx = self.ctx
        admin = ctx.gateway.admin
        stat = f"cluster.{cluster_name(service, version)}.upstream_rq_active"
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while admin is not None and time.monotonic() < deadline:
            active = (await admin.stats(f"^{stat}$".replace(".", r"\."))).get(stat, 0)
            if active == 0:
                break
            await asyncio.sleep(0.1)
        await ctx.runtime.stop(service, version)
        async with ctx.lock:
            ctx.store.remove_deployment(service, version)
            await ctx.publish()
