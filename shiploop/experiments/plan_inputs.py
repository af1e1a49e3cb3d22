"""What `experiment plan` measures before anything starts: the primary metric's baseline rate on stable,
and how many units a second would enter the experiment.

The gateway sees units and events only on routes with an experiment's script, so the baseline
comes from the control variant (the stable version of its time) of the service's experiments,
newest first, running or ended. The units a second come from live traffic: the service's
requests a second now, divided by the requests a unit made in its latest experiment (without
one, every request counts as a new unit: the most there can be, so the shortest plan). Without
live traffic, the latest experiment's own rate of new units is the estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

from shiploop.gateway.assignment import CONTROL
from shiploop.store import Store

SEARCHED = 20  # experiments looked back over for a baseline


@dataclass(frozen=True)
class Estimate:
    value: float
    source: str  # where it comes from, in words (`plan` prints it)


def baseline_seen(store: Store, service: str, event: str) -> Estimate | None:
    """The share of control units with `event` in the newest experiment that measured a rate strictly
    between 0 and 1 (a plan needs one); None when the gateway never saw one."""
    for row in store.experiments(service, limit=SEARCHED):
        sums = store.arm_sums(row.id, event, conversion=True).get(CONTROL)
        if sums is not None and sums.units and 0 < sums.x < sums.units:
            rate = sums.x / sums.units
            return Estimate(rate, f"{event} on stable: {int(sums.x)} of {sums.units} units in experiment #{row.id}")
    return None


def units_per_second(store: Store, service: str, live_rps: float | None, now: float) -> Estimate | None:
    """New units a second: live requests a second over requests per unit, else the latest experiment's rate."""
    latest = next(iter(store.experiments(service, limit=1)), None)
    per_unit: Estimate | None = None
    if latest is not None:
        requests, units = store.unit_requests(latest.id)
        if units and requests >= units:
            per_unit = Estimate(requests / units, f"experiment #{latest.id}")
    if live_rps:
        if per_unit is not None:
            return Estimate(
                live_rps / per_unit.value,
                f"{live_rps:.3g} requests/s now, {per_unit.value:.3g} requests a unit in {per_unit.source}",
            )
        return Estimate(live_rps, f"{live_rps:.3g} requests/s now, each counted as a new unit (an upper bound)")
    if latest is not None:
        units = sum(store.arm_units(latest.id).values())
        seconds = (latest.ended_at or now) - latest.started_at
        if units and seconds > 0:
            return Estimate(units / seconds, f"new units in experiment #{latest.id} (no traffic now)")
    return None
