"""The restart back-off of a crash-looping replica, and its reset once the replica has been healthy a while.

The runtime is driven with an injected clock; spawning and probing are replaced
by stand-ins (this process stands in for a live replica), so no process starts.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from shiploop.procs import process_start_time
from shiploop.runtime.local import HEALTHY_RESETS_BACKOFF_S, LocalRuntime, Replica, RunConfig
from shiploop.store import Store


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def runtime(tmp_path: Path, clock: Clock) -> tuple[LocalRuntime, Replica, list[str]]:
    events: list[str] = []
    rt = LocalRuntime(tmp_path, Store(tmp_path / "state.db"), lambda *a: events.append(a[2]), clock=clock)
    config = RunConfig(["true"], {}, tmp_path, "/healthz", 1.0)
    replica = Replica("web", "v1", 0, 1, tmp_path / "web.log", config)
    me = (os.getpid(), process_start_time(os.getpid()))

    def spawn(r: Replica) -> None:  # the replica "starts": it is this (live) process
        r.pid, r.start_time = me
        r.ready = False

    async def probe(r: Replica) -> bool:
        return True

    rt._spawn = spawn  # type: ignore[method-assign]
    rt._probe = probe  # type: ignore[method-assign]
    spawn(replica)
    rt.replicas.append(replica)
    return rt, replica, events


def crash(r: Replica) -> None:
    r.start_time = -1  # no live process has this start time: the replica is gone


async def delay_after_crash(rt: LocalRuntime, r: Replica, clock: Clock) -> float:
    crash(r)
    await rt.tick()
    delay = r.next_start_at - clock.now
    clock.now = r.next_start_at
    await rt.tick()  # restarted
    return delay


def run(coro: Any) -> Any:
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


def test_backoff_grows_while_crashing_and_resets_after_healthy_a_while(tmp_path: Path):
    clock = Clock()
    rt, r, events = runtime(tmp_path, clock)

    async def scenario() -> list[float]:
        delays = [await delay_after_crash(rt, r, clock) for _ in range(8)]
        # Healthy, but not yet for long enough: the back-off stays where it was.
        await rt.tick()
        clock.now += HEALTHY_RESETS_BACKOFF_S / 2
        await rt.tick()
        delays.append(await delay_after_crash(rt, r, clock))
        # Healthy for the whole minute: the next crash restarts it quickly again.
        await rt.tick()
        clock.now += HEALTHY_RESETS_BACKOFF_S
        await rt.tick()
        delays.append(await delay_after_crash(rt, r, clock))
        return delays

    delays = run(scenario())
    assert delays == [0.5, 1, 2, 4, 8, 16, 30, 30, 30, 0.5]
    assert r.restarts == 10  # the count in status is the version's whole life
    assert len(events) == 10
