"""Hand changes while an automatic rollout owns a service: refused, or with force, the rollout pauses;
and a service's rollout starts, experiment starts and hand changes, one at a time.

The guard sits in the API layer, not in the control plane's mutations: the
rollout controller makes the same calls (deploy, weights, promote, rollback) to
move its own steps, and those must never be refused.
"""

from __future__ import annotations

import asyncio

from shiploop.errors import Conflict
from shiploop.naming import ACTIVE_ROLLOUT_STATES, RolloutState
from shiploop.rollout.controller import RolloutController
from shiploop.store import Store


async def guard_hand_change(rollouts: RolloutController, store: Store, service: str, action: str, force: bool) -> None:
    """Return if `action` (e.g. "route --weight") may change `service` by hand now; raise Conflict if not.

    With `force`, an active rollout is paused first (it stays paused until a person
    resumes, promotes or aborts it) and the takeover is recorded in its events."""
    experiment = store.running_experiment(service)
    if experiment is not None and not force:
        # The experiment splits units between stable and its candidate: a hand change of
        # either ends the split (routing/_assignment), so say so first.
        raise Conflict(
            f"{service} runs experiment #{experiment.id} ({service}@{experiment.treatment} against stable): "
            f"{action} would end it",
            hint=f"end it first: shiploop experiment stop {service} --discard; or repeat with --force",
        )
    r = rollouts.latest(service)
    if r is None or r.state not in ACTIVE_ROLLOUT_STATES:
        return
    if not force:
        raise Conflict(
            f"{service} is being rolled out automatically (rollout #{r.id} of {service}@{r.candidate}, {r.state}): "
            f"{action} would fight it",
            hint=f"take over with: shiploop rollout pause|abort|promote {service}; or repeat with --force to pause it",
        )
    if r.state != RolloutState.PAUSED:
        await rollouts.pause(service)
    store.event(
        service,
        "rollout-taken-over",
        f"{action} by hand with --force: rollout #{r.id} paused",
        {"rollout": r.id, "action": action, "state_before": r.state},
    )


class TrafficLocks:
    """A lock per service, held from a start's or a hand change's checks to its end: a rollout start, an
    experiment start, a deploy, route, promote or rollback through the API.

    Each checks who owns the service, then acts, which takes seconds (a deploy waits for readiness):
    a rollout start and an experiment start at once both passed their checks, and the rollout moved
    the weights of the canary the experiment was splitting by unit; a deploy at 50% beside a rollout
    start was answered 200 and set to the rollout's 5% a moment later."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}

    def of(self, service: str) -> asyncio.Lock:
        return self._locks.setdefault(service, asyncio.Lock())
