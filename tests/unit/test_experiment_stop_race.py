"""A stop by hand and the controller's tick never interleave their decisions.

The tick reads the running experiments, then awaits the app counters; a stop by hand that
ended the experiment meanwhile was overwritten by the tick's stale row as "ended by hand"
(seen once in the suite: discarded -> ended). A real SQLite store; the control plane and the
counter source are fakes that wait where the real ones wait on Envoy.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

from shiploop.experiments.controller import ExperimentController
from shiploop.naming import Track
from shiploop.rollout.readings import Observation, Pair, Reading
from shiploop.store import DeploymentRow, Store

SPEC: dict[str, Any] = {
    "hypothesis": "The one-field form raises signups",
    "unit": {"cookie": "shiploop_uid"},
    "allocation": 50,
    "metrics": {"primary": {"event": "signup"}, "secondary": [{"app": "checkout_total/visits_total"}]},
    "minimum_detectable_effect": 0.05,
}


class FakeContext:
    def __init__(self, root: Path) -> None:
        self.experiment_log = root / "experiments.log"  # never written: no exposures to fold

    def require_service(self, service: str) -> None:
        pass


class FakePlane:
    """Rollback retires the candidate, as the real one does before it publishes."""

    def __init__(self, store: Store, root: Path) -> None:
        self.store = store
        self.ctx = FakeContext(root)
        self.events: list[str] = []

    async def rollback(self, service: str, reason: str) -> None:
        for d in self.store.deployments(service):
            if d.track == Track.CANARY:
                self.store.upsert_deployment(dataclasses.replace(d, track=Track.RETIRING))
        await asyncio.sleep(0)

    def event(self, service: str, kind: str, message: str, evidence: dict[str, Any] | None = None) -> None:
        self.events.append(kind)


class SlowCounters:
    """The apps' counters, answered only when the test lets them."""

    def __init__(self) -> None:
        self.asked = asyncio.Event()
        self.answer = asyncio.Event()

    async def read(
        self, service: str, candidate: str, baseline: str, policy: Any, fresh_after: Any = None
    ) -> Observation:
        self.asked.set()
        await self.answer.wait()
        return Observation(Pair(Reading(1.0), Reading(1.0)))


def _deployment(version: str, track: Track) -> DeploymentRow:
    return DeploymentRow("shop", version, track, 50, 1, {}, "ready", 0.0)


def test_a_stop_while_the_tick_reads_counters_stays_discarded(tmp_path: Path):
    store = Store(tmp_path / "state.db")
    store.upsert_deployment(_deployment("v1", Track.STABLE))
    store.upsert_deployment(_deployment("v2", Track.CANARY))
    experiment = store.insert_experiment("shop", "salt", SPEC["hypothesis"], SPEC, "v1", "v2", 0.0)
    counters = SlowCounters()
    controller = ExperimentController(FakePlane(store, tmp_path), clock=lambda: 100.0, readings=counters)  # type: ignore[arg-type]

    async def scenario() -> None:
        ticking = asyncio.create_task(controller.tick())
        await asyncio.wait_for(counters.asked.wait(), 5)  # the tick holds the running row and waits
        stopping = asyncio.create_task(controller.stop("shop", ship=False))
        await asyncio.sleep(0.05)
        counters.answer.set()
        await asyncio.wait_for(asyncio.gather(ticking, stopping), 5)
        await controller.tick()  # a later tick sees nothing running

    asyncio.run(scenario())
    row = store.experiment(experiment)
    assert row is not None and row.state == "discarded", row
