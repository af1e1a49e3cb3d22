"""A person's command while a tick judges the same rollout: the command's state is the one that stays.

The tick reads the record, then awaits the readings (Envoy's stats over HTTP). A pause or an
abort that finished in that gap was overwritten when the tick saved its stale copy: a paused
rollout went on moving weights, an aborted one came back as progressing. Seen in a full run:
`route --force` returned, and the rollout it paused read `progressing`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from shiploop.rollout.controller import RolloutController
from shiploop.rollout.readings import Observation
from shiploop.spec import RolloutPolicy
from tests.unit.rollout_fakes import CANDIDATE, SERVICE, FakeTraffic, Harness


class GatedReadings:
    """The fake traffic's readings, held at a gate while `gate` is set."""

    def __init__(self, traffic: FakeTraffic) -> None:
        self.traffic = traffic
        self.gate: asyncio.Event | None = None
        self.waiting = asyncio.Event()

    async def read(
        self, service: str, candidate: str, baseline: str, policy: RolloutPolicy, fresh_after: float | None = None
    ) -> Observation:
        if self.gate is not None:
            self.waiting.set()
            await self.gate.wait()
        return await self.traffic.read(service, candidate, baseline, policy, fresh_after)


@pytest.mark.parametrize(("command", "final"), [("pause", "paused"), ("abort", "aborted")])
def test_a_command_during_a_tick_is_not_overwritten_by_it(tmp_path: Path, command: str, final: str):
    h = Harness(tmp_path)
    readings = GatedReadings(h.traffic)
    h.controller = RolloutController(h.store, h.deployments, readings, h.notifier, clock=h.clock, sleep=h.clock.sleep)
    h.start()

    async def race() -> Any:
        h.traffic.serve(30.0)  # enough for the step to pass: a tick that judged would advance
        h.clock.now += 30.0
        readings.gate = asyncio.Event()
        tick = asyncio.create_task(h.controller.tick())
        await readings.waiting.wait()  # the tick holds its record and waits on the readings
        by_hand = asyncio.create_task(getattr(h.controller, command)(SERVICE))
        await asyncio.sleep(0)
        readings.gate.set()
        await tick
        return await by_hand

    view = asyncio.run(race())
    assert view["state"] == final
    assert h.state() == final
    events = len(h.kinds())
    assert h.kinds()[-1] == f"rollout-{final}"  # the command came last: the tick judged before it
    h.run(5)  # and later ticks leave the rollout as the person did
    assert h.state() == final and len(h.kinds()) == events
    if command == "abort":
        assert CANDIDATE not in h.deployments.rows  # the traffic went back to stable, and stays
