"""The supervision loop: probe and restart replicas, restart Envoy, republish on change,
prune, retry the state store, run the layers' hooks.

It must outlive anything that goes wrong in one tick: each part of a tick runs
on its own, a failure is logged to the daemon log (and recorded as an event
once), and the loop goes on. A store that refuses writes makes the daemon
`degraded` (see views): supervision carries on from memory, and the records
it could not write are written again, with back-off, until the disk takes them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from shiploop.errors import ShiploopError
from shiploop.server.context import PlaneContext
from shiploop.server.mutations import DRAIN_TIMEOUT_S

TickHook = Callable[[], Awaitable[None]]
T = TypeVar("T")

log = logging.getLogger("shiploop.supervisor")

# Envoy is checked ten times a second: a /proc read. Measured: a killed Envoy
# serves again 0.5-0.8 s later (detection, start, first config, confirmation).
ENVOY_WATCH_S = 0.1
# Waits between attempts to write again to a store that refused a write, and
# between attempts to start an Envoy that would not start.
RETRY_BACKOFF_S = (0.5, 1.0, 2.0, 4.0)
# A small write this often tells a store that stopped taking writes from an idle one.
HEARTBEAT_S = 2.0


class Backoff:
    def __init__(self, steps: tuple[float, ...] = RETRY_BACKOFF_S) -> None:
        self.steps = steps
        self.failures = 0
        self.next_at = 0.0

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def failed(self, now: float) -> float:
        delay = self.steps[min(self.failures, len(self.steps) - 1)]
        self.failures += 1
        self.next_at = now + delay
        return delay

    def reset(self) -> None:
        self.failures = 0
        self.next_at = 0.0


class Supervisor:
    def __init__(self, ctx: PlaneContext) -> None:
        self.ctx = ctx
        # Hooks for layers above (the observer, the rollout controller) to run each tick.
        self.tick_hooks: list[TickHook] = []
        self._republish = False  # a tick failed part-way: publish even if nothing seems changed
        self._last_publish = time.monotonic()
        self._store_retry = Backoff()
        self._envoy_retry = Backoff()
        self._publish_retry = Backoff()
        self._reported: dict[str, str] = {}  # part -> the last failure logged for it
        self._last_heartbeat = 0.0

    async def run(self, interval_s: float = 0.5) -> None:
        watcher = asyncio.create_task(self.watch_envoy())
        try:
            while True:
                await self.tick()
                await asyncio.sleep(interval_s)
        finally:
            watcher.cancel()

    async def tick(self) -> None:
        ctx = self.ctx
        changed = await self._attempt("replicas", ctx.runtime.tick)
        if changed is None:
            # The tick may have changed readiness before it failed: publish what is true now.
            self._republish = True
        prune = ctx.gateway.publisher.needs_prune and time.monotonic() - self._last_publish > DRAIN_TIMEOUT_S
        if changed or prune or self._republish:
            # Never wait here: while Envoy is down the watcher restarts it from the accepted
            # state, and a mutation holding the lock (a deploy waits up to 30 s for readiness)
            # publishes the endpoints as they are then. Publish on a later tick.
            self._republish = True
            now = time.monotonic()
            if ctx.gateway.alive() and not ctx.lock.locked() and self._publish_retry.due(now):
                if await self._attempt("publish", self._publish) is not None:
                    self._republish = False
                    self._publish_retry.reset()
                else:  # a publish that failed is tried again with back-off, not every tick
                    self._publish_retry.failed(now)
        if ctx.store.write_error is not None or ctx.store.pending_writes:
            await self._retry_store()
        elif time.monotonic() - self._last_heartbeat > HEARTBEAT_S:
            self._last_heartbeat = time.monotonic()
            await self._attempt("store", self._heartbeat)
        for hook in self.tick_hooks:
            await self._attempt(getattr(hook, "__qualname__", "hook"), hook)

    async def _publish(self) -> bool:
        async with self.ctx.lock:
            await self.ctx.publish()
        self._last_publish = time.monotonic()
        return True

    # -- Envoy -----------------------------------------------------------------------------------

    async def watch_envoy(self) -> None:
        while True:
            await asyncio.sleep(ENVOY_WATCH_S)
            await self._attempt("envoy", self.check_envoy)

    async def check_envoy(self) -> bool:
        """Restart Envoy if it died; record the restart. True if it serves."""
        ctx = self.ctx
        gateway = ctx.gateway
        if gateway.process is None or gateway.alive():
            return True
        now = time.monotonic()
        if not self._envoy_retry.due(now):
            return False
        dead = gateway.process
        try:
            restart = await gateway.restart()
        except Exception:
            delay = self._envoy_retry.failed(now)
            log.warning("envoy pid %s is gone and did not start again; next try in %.1fs", dead.pid, delay)
            raise
        self._envoy_retry.reset()
        if restart is None:
            return True
        assert gateway.process is not None
        log.warning(
            "envoy pid %d was gone; pid %d serves generation %d again after %.2fs",
            restart.old_pid,
            restart.new_pid,
            restart.generation,
            restart.seconds,
        )
        ctx.event(
            None,
            "envoy-restarted",
            f"envoy pid {restart.old_pid} was gone; started pid {restart.new_pid} on routing generation "
            f"{restart.generation} ({restart.seconds:.2f}s); restart {gateway.restarts}",
            {
                "old_pid": restart.old_pid,
                "pid": restart.new_pid,
                "generation": restart.generation,
                "seconds": round(restart.seconds, 3),
                "restarts": gateway.restarts,
            },
        )
        self._save_envoy_record()
        return True

    def _save_envoy_record(self) -> None:
        process = self.ctx.gateway.process
        if process is not None:
            self.ctx.store.put("envoy", process.to_json())

    # -- the state store --------------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        self.ctx.store.put("supervisor_heartbeat", str(self.ctx.clock()))

    async def _retry_store(self) -> None:
        """Write again what the store refused: every replica's record, Envoy's, the kept events."""
        store = self.ctx.store
        now = time.monotonic()
        if not self._store_retry.due(now):
            return
        failing_since = store.write_error_since
        try:
            with store.transaction():
                for replica in self.ctx.runtime.replicas:
                    store.save_replica(replica.row())
                self._save_envoy_record()
            store.flush_pending()
        except Exception as e:
            delay = self._store_retry.failed(now)
            self._report("store", f"state store still not writable ({e}); next try in {delay:.1f}s", trace=False)
            return
        self._store_retry.reset()
        self._reported.pop("store", None)
        down_s = time.time() - failing_since if failing_since is not None else 0.0
        log.warning("state store writable again after %.1fs; records written again", down_s)
        self.ctx.event(None, "store-recovered", f"state store writable again after {down_s:.1f}s")

    # -- failures ---------------------------------------------------------------------------------

    async def _attempt(self, part: str, fn: Callable[[], Awaitable[T]]) -> T | None:
        """Run one part of supervision; on any failure log it and return None."""
        try:
            result = await fn()
        except asyncio.CancelledError:
            raise
        except ShiploopError as e:
            self._report(part, e.line(), trace=False)
            return None
        except Exception as e:  # a bug, or the disk: keep supervising
            self._report(part, f"{type(e).__name__}: {e}", trace=True)
            return None
        self._reported.pop(part, None)
        return result

    def _report(self, part: str, message: str, trace: bool) -> None:
        """Log a failure to the daemon log, once per new message per part, and record it as an event."""
        if self.ctx.store.write_error is not None and part != "store":
            message += f" [state store not writable: {self.ctx.store.write_error}]"
        if self._reported.get(part) == message:
            return
        self._reported[part] = message
        log.error("supervision of %s failed: %s", part, message, exc_info=trace)
        # Never raises on a disk that refuses writes: the event waits in memory (see Store.event).
        try:
            self.ctx.event(None, "error", f"supervision of {part}: {message}")
        except Exception:
            log.exception("could not record the failure as an event")
