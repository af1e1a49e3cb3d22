"""A Snapshot of the control plane as it is now, for one scrape of the daemon's /metrics.

Everything is read at scrape time from what the daemon already keeps: the
deployments and replicas (store and runtime), the gateway's counters, and each
service's latest rollout (its record in the store). Decisions are counted from
the rollout events; the events table only grows, so each scrape reads just the
rows added since the last one (a rowid range) and adds them to what it counted.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from shiploop.naming import ACTIVE_ROLLOUT_STATES
from shiploop.server.controlplane import ControlPlane
from shiploop.telemetry.snapshot import (
    GuardrailSample,
    HistogramSample,
    RolloutSample,
    Snapshot,
    VersionSample,
)

# Rollout events and the decision outcome each records (rollout.controller).
DECISION_EVENTS = {
    "rollout-advance": "advance",
    "rollout-holding": "holding",
    "rollout-held": "held",
    "rollout-promoted": "promoted",
    "rollout-rolled-back": "rolled_back",
    "rollout-failed": "failed",
    "rollout-aborted": "aborted",
}


# A finished rollout keeps its series this long, so its outcome is scraped (and alerted on) before it
# goes; after that only active rollouts cost series (1,000 services' worth of old ones would not be cheap).
ENDED_ROLLOUT_KEPT_S = 3600.0


class StateReader:
    def __init__(self, cp: ControlPlane, clock: Callable[[], float] = time.time) -> None:
        self.cp = cp
        self.clock = clock
        self._events_seen = 0  # the last event id counted
        self._decisions: dict[int, dict[str, int]] = {}  # rollout id -> outcome -> count

    def snapshot(self) -> Snapshot:
        cp = self.cp
        # One pass over the replicas (runtime.counts per version would be quadratic: 1,000 services).
        per_version: dict[tuple[str, str], list[int]] = {}  # -> [ready, total, restarts]
        for r in cp.runtime.replicas:
            c = per_version.setdefault(r.key, [0, 0, 0])
            c[0] += r.ready
            c[1] += 1
            c[2] += r.restarts
        versions = []
        # The columns only: store.deployments() also parses every version's spec (9 ms at 1,000 services).
        rows = cp.store.db.execute("SELECT service, version, track, weight FROM deployments ORDER BY service, version")
        for service, version, track, weight in rows:
            ready, total, restarts = per_version.get((service, version), (0, 0, 0))
            versions.append(VersionSample(service, version, track, weight, ready, total, restarts))
        gw = cp.gateway
        p = gw.publish_seconds
        return Snapshot(
            versions=tuple(versions),
            rollouts=self._rollouts(),
            publish_seconds=HistogramSample(p.bounds, tuple(p.counts), p.count, p.total),
            envoy_rejections=gw.publisher.rejections,
            envoy_restarts=gw.restarts,
        )

    def _rollouts(self) -> tuple[RolloutSample, ...]:
        """Each service's latest rollout, if active or ended in the last hour: its step, state, guardrails,
        decisions."""
        db = self.cp.store.db
        self._count_decisions(db)
        active = [str(s) for s in ACTIVE_ROLLOUT_STATES]
        rows = db.execute(
            "SELECT id, service, candidate, baseline, state, step, data FROM rollouts"
            " WHERE id IN (SELECT max(id) FROM rollouts GROUP BY service)"
            f" AND (state IN ({','.join('?' * len(active))}) OR updated_at >= ?) ORDER BY service",
            (*active, self.clock() - ENDED_ROLLOUT_KEPT_S),
        ).fetchall()
        out = []
        for rid, service, candidate, baseline, state, step, data in rows:
            last = json.loads(data).get("last") or {}
            out.append(
                RolloutSample(
                    service,
                    rid,
                    candidate,
                    baseline,
                    state,
                    step,
                    tuple(_guardrail(g) for g in last.get("guardrails", [])),
                    dict(self._decisions.get(rid, {})),
                )
            )
        return tuple(out)

    def _count_decisions(self, db: Any) -> None:
        marks = ",".join("?" * len(DECISION_EVENTS))
        rows = db.execute(
            f"SELECT id, kind, evidence FROM events WHERE id > ? AND kind IN ({marks}) ORDER BY id",
            (self._events_seen, *DECISION_EVENTS),
        ).fetchall()
        for eid, kind, evidence in rows:
            self._events_seen = eid
            rid = (json.loads(evidence) if evidence else {}).get("rollout")
            if isinstance(rid, int):
                counts = self._decisions.setdefault(rid, {})
                outcome = DECISION_EVENTS[kind]
                counts[outcome] = counts.get(outcome, 0) + 1


def _guardrail(g: dict[str, Any]) -> GuardrailSample:
    both = bool(g["candidate"]["trials"] and g["baseline"]["trials"])
    return GuardrailSample(
        g["name"],
        g["estimate"] if both else None,
        g["lower_bound"] if both else None,
        g["upper_bound"] if both else None,
        g["tolerance"],
    )
