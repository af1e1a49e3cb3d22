"""The supervision loop: probe and restart replicas, republish on change, prune, run the layers' hooks."""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import Awaitable, Callable

from shiploop.errors import ShiploopError
from shiploop.server.context import PlaneContext
from shiploop.server.mutations import DRAIN_TIMEOUT_S

TickHook = Callable[[], Awaitable[None]]


class Supervisor:
    def __init__(self, ctx: PlaneContext) -> None:
        self.ctx = ctx
        # Hooks for layers above (the observer, the rollout controller) to run each tick.
        self.tick_hooks: list[TickHook] = []

    async def run(self, interval_s: float = 0.5) -> None:
        ctx = self.ctx
        last_publish = time.monotonic()
        while True:
            try:
                changed = await ctx.runtime.tick()
                prune = ctx.gateway.publisher.needs_prune and time.monotonic() - last_publish > DRAIN_TIMEOUT_S
                if changed or prune:
                    async with ctx.lock:
                        await ctx.publish()
                    last_publish = time.monotonic()
                for hook in self.tick_hooks:
                    await hook()
            except ShiploopError as e:
                ctx.event(None, "error", e.line())
            except Exception as e:  # a bug: keep supervising, but leave the traceback in the daemon log
                traceback.print_exc()
                ctx.event(None, "error", f"internal error in the supervisor: {e!r}")
            await asyncio.sleep(interval_s)
