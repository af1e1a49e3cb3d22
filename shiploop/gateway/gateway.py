"""The gateway: one supervised Envoy plus the publisher that feeds it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from shiploop.errors import ShiploopError
from shiploop.gateway.admin import EnvoyAdmin
from shiploop.gateway.envoy import EnvoyProcess, start_envoy
from shiploop.gateway.model import PublishResult, RoutingState
from shiploop.gateway.publisher import Publisher
from shiploop.procs import free_port


class Gateway:
    def __init__(self, state_dir: Path, node_id: str = "shiploop") -> None:
        self.xds_dir = state_dir / "xds"
        self.log_path = state_dir / "logs" / "envoy.log"
        self.node_id = node_id
        self.publisher = Publisher(self.xds_dir, self.log_path)
        self.process: EnvoyProcess | None = None
        self.admin: EnvoyAdmin | None = None

    async def start(self, initial: RoutingState, admin_port: int = 0, ready_timeout_s: float = 20.0) -> None:
        """Write the first generation, start Envoy on it and wait until it serves."""
        await self.publisher.publish(initial)
        port = admin_port or free_port()
        self.process = start_envoy(self.xds_dir, port, self.log_path, self.node_id)
        await self._attach(port, ready_timeout_s)
        # Confirm Envoy took the exact generation we wrote.
        await self.publisher.publish(initial)

    async def adopt(self, process: EnvoyProcess, state: RoutingState) -> bool:
        """Take over an Envoy a previous daemon started; False if it is gone."""
        if not process.alive():
            return False
        self.process = process
        await self._attach(process.admin_port, 5.0)
        # The routes Envoy serves came from the last generation on disk; publish the
        # same state again, which Envoy applies as a no-op change.
        await self.publisher.publish(state)
        return True

    async def _attach(self, admin_port: int, timeout_s: float) -> None:
        self.admin = EnvoyAdmin(admin_port)
        deadline = time.monotonic() + timeout_s
        while not await self.admin.ready():
            if self.process is not None and not self.process.alive():
                raise ShiploopError(f"envoy exited during start-up; see {self.log_path}")
            if time.monotonic() > deadline:
                raise ShiploopError(f"envoy was not ready within {timeout_s:.0f}s; see {self.log_path}")
            await asyncio.sleep(0.05)
        self.publisher.attach(self.admin)

    async def publish(self, state: RoutingState) -> PublishResult:
        return await self.publisher.publish(state)

    async def stop(self) -> None:
        if self.admin is not None:
            await self.admin.close()
            self.admin = None
        if self.process is not None:
            await asyncio.to_thread(self.process.stop)
            self.process = None
