"""The gateway: one supervised Envoy plus the publisher that feeds it."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

from shiploop.errors import ShiploopError, Unavailable
from shiploop.gateway.admin import EnvoyAdmin
from shiploop.gateway.envoy import EnvoyProcess, start_envoy
from shiploop.gateway.model import PublishResult, RoutingState
from shiploop.gateway.publisher import EnvoyUnreachable, Publisher
from shiploop.paths import admin_socket_path
from shiploop.procs import free_port, port_free

# How long a publish waits for a dead Envoy to be restarted before it reports
# the gateway unavailable. A restart takes about half a second (measured).
RESTART_WAIT_S = 10.0


@dataclass(frozen=True)
class EnvoyRestart:
    """One restart of an Envoy that had died: which process, from which generation, how long it took."""

    old_pid: int
    new_pid: int
    generation: int
    seconds: float
    at: float  # wall clock when it serves again


# Upper bounds (s) of the publish-time histogram: a publish takes 10-20 ms (bench.reconfigure),
# a large first apply over a second (bench.scale), a wait for a restarted Envoy up to 10 s.
PUBLISH_BUCKETS_S = (0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass
class Durations:
    """A cumulative histogram of durations, as Prometheus exposes one (counts per upper bound)."""

    bounds: tuple[float, ...] = PUBLISH_BUCKETS_S
    counts: list[int] = field(default_factory=lambda: [0] * len(PUBLISH_BUCKETS_S))
    count: int = 0
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        self.count += 1
        self.total += seconds
        for i, bound in enumerate(self.bounds):
            if seconds <= bound:
                self.counts[i] += 1


class Gateway:
    def __init__(self, state_dir: Path, node_id: str = "shiploop", stats_port: int | None = None) -> None:
        self.xds_dir = state_dir / "xds"
        self.log_path = state_dir / "logs" / "envoy.log"
        self.admin_socket = admin_socket_path(state_dir)
        self.node_id = node_id
        self.stats_port = stats_port  # Envoy's /metrics for Prometheus (gateway.stats_listener); None: none
        self.publisher = Publisher(self.xds_dir, self.log_path)
        self.process: EnvoyProcess | None = None
        self.admin: EnvoyAdmin | None = None
        self.restarts = 0
        self.publish_seconds = Durations()  # every publish Envoy accepted: call to Envoy serving it
        self.last_restart: EnvoyRestart | None = None
        self._restart_lock = asyncio.Lock()

    async def start(self, initial: RoutingState, ready_timeout_s: float = 20.0) -> None:
        """Write the first generation, start Envoy on it and wait until it serves."""
        await self.publisher.publish(initial)
        self.process = self._launch()
        await self._attach(ready_timeout_s)
        # Confirm Envoy took the exact generation we wrote.
        await self.publisher.publish(initial)

    def _launch(self) -> EnvoyProcess:
        if self.stats_port is not None and not port_free(self.stats_port):
            # Taken since Envoy last had it: a metrics port must never keep the gateway from
            # starting. Prometheus finds the new one in the file_sd targets (telemetry.targets).
            self.stats_port = free_port()
        return start_envoy(self.xds_dir, self.admin_socket, self.log_path, self.node_id, self.stats_port)

    async def adopt(self, process: EnvoyProcess, state: RoutingState) -> bool:
        """Take over an Envoy a previous daemon started; False if it is gone."""
        if not process.alive():
            return False
        if process.admin_socket != self.admin_socket:
            # Started with its admin API elsewhere (an older shiploop): we cannot
            # administer it, and it holds the gateway port. Replace it.
            await asyncio.to_thread(process.stop)
            return False
        self.process = process
        self.stats_port = process.stats_port  # None: started by a shiploop without the stats listener
        await self._attach(5.0)
        # The routes Envoy serves came from the last generation on disk; publish the
        # same state again, which Envoy applies as a no-op change.
        await self.publisher.publish(state)
        return True

    def alive(self) -> bool:
        return self.process is not None and self.process.alive()

    async def restart(self, ready_timeout_s: float = 20.0) -> EnvoyRestart | None:
        """Start Envoy again after it died, on the last generation it had accepted.

        None if it is alive (or was never started). Routes published since are not
        lost: they are in the accepted state the publisher keeps (`live`).
        """
        async with self._restart_lock:
            if self.process is None or self.alive():
                return None
            started = time.monotonic()
            old = self.process
            if self.admin is not None:
                await self.admin.close()
                self.admin = None
            # A publish Envoy never confirmed may be `current` on disk: start from the accepted state.
            generation = await self.publisher.rewrite_live()
            self.process = self._launch()
            await self._attach(ready_timeout_s)
            await self.publisher.confirm_current()
            self.restarts += 1
            self.last_restart = EnvoyRestart(
                old.pid, self.process.pid, generation, time.monotonic() - started, time.time()
            )
            return self.last_restart

    async def _attach(self, timeout_s: float) -> None:
        self.admin = EnvoyAdmin(self.admin_socket)
        deadline = time.monotonic() + timeout_s
        while not await self.admin.ready():
            if self.process is not None and not self.process.alive():
                raise ShiploopError(f"envoy exited during start-up; see {self.log_path}")
            if time.monotonic() > deadline:
                raise ShiploopError(f"envoy was not ready within {timeout_s:.0f}s; see {self.log_path}")
            await asyncio.sleep(0.02)
        self.publisher.attach(self.admin)

    async def publish(self, state: RoutingState) -> PublishResult:
        """Publish and wait for Envoy to serve it. If Envoy is down (killed, restarting),
        wait for the supervisor to restart it, then publish to the new Envoy."""
        started = time.monotonic()
        result = await self._publish(state)
        self.publish_seconds.observe(time.monotonic() - started)
        return result

    async def _publish(self, state: RoutingState) -> PublishResult:
        await self._wait_serving()
        try:
            return await self.publisher.publish(state)
        except EnvoyUnreachable:
            if self.alive() and not self._restart_lock.locked():
                raise
        await self._wait_serving()
        return await self.publisher.publish(state)

    async def _wait_serving(self) -> None:
        if self.process is None or (self.alive() and not self._restart_lock.locked()):
            return
        deadline = time.monotonic() + RESTART_WAIT_S
        while not self.alive() or self._restart_lock.locked():
            if time.monotonic() > deadline:
                raise Unavailable(
                    f"envoy is down and was not restarted within {RESTART_WAIT_S:.0f}s",
                    hint=f"see its log at {self.log_path}; then: shiploop status",
                )
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        if self.admin is not None:
            await self.admin.close()
            self.admin = None
        # Forget the process before stopping it, so no supervisor takes its end for a crash.
        process, self.process = self.process, None
        if process is not None:
            await asyncio.to_thread(process.stop)
