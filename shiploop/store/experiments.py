"""Experiments in the store: the experiment rows, and per unit and variant what Envoy logged.

A unit's variant is the one of its first logged request (the hash never changes it
during an experiment). Events are summed per unit and event name: a count (did the
unit convert) and the total of the values reported with it (purchase=12.50).
Traffic per variant (requests, 5xx, latency buckets) feeds the rollout guardrails.
App counters ({app: NUM/DEN}) have no unit: per variant they are kept as batches, one
per reading, each the increase of numerator x and denominator d (sums for the delta method).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

EXPERIMENT_SCHEMA = """
CREATE TABLE IF NOT EXISTS experiments (
    id INTEGER PRIMARY KEY AUTOINCREMENT, service TEXT NOT NULL, salt TEXT NOT NULL UNIQUE,
    hypothesis TEXT NOT NULL, spec TEXT NOT NULL, control TEXT NOT NULL, treatment TEXT NOT NULL,
    state TEXT NOT NULL, started_at REAL NOT NULL, ended_at REAL, decision TEXT, reason TEXT, result TEXT);
CREATE TABLE IF NOT EXISTS experiment_units (
    experiment INTEGER NOT NULL, unit TEXT NOT NULL, arm TEXT NOT NULL, first_seen REAL NOT NULL,
    requests INTEGER NOT NULL, PRIMARY KEY (experiment, unit));
CREATE TABLE IF NOT EXISTS experiment_unit_events (
    experiment INTEGER NOT NULL, unit TEXT NOT NULL, event TEXT NOT NULL, count INTEGER NOT NULL,
    total REAL NOT NULL, PRIMARY KEY (experiment, unit, event));
CREATE TABLE IF NOT EXISTS experiment_traffic (
    experiment INTEGER NOT NULL, arm TEXT NOT NULL, requests INTEGER NOT NULL, errors INTEGER NOT NULL,
    buckets TEXT NOT NULL, PRIMARY KEY (experiment, arm));
CREATE TABLE IF NOT EXISTS experiment_points (
    experiment INTEGER NOT NULL, ts REAL NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS experiment_app_sums (
    experiment INTEGER NOT NULL, metric TEXT NOT NULL, arm TEXT NOT NULL, batches INTEGER NOT NULL,
    x REAL NOT NULL, xx REAL NOT NULL, d REAL NOT NULL, dd REAL NOT NULL, xd REAL NOT NULL,
    PRIMARY KEY (experiment, metric, arm));
"""
RUNNING_STATES = ("running", "held")


@dataclass(frozen=True)
class ExperimentRow:
    id: int
    service: str
    salt: str
    hypothesis: str
    spec: dict[str, Any]
    control: str
    treatment: str
    state: str
    started_at: float
    ended_at: float | None
    decision: str | None
    reason: str | None
    result: dict[str, Any] | None

    @property
    def running(self) -> bool:
        return self.state in RUNNING_STATES


@dataclass(frozen=True)
class Exposure:
    """One logged request of a unit: its variant, status, duration and the events the app reported."""

    salt: str
    unit: str
    arm: str
    ts: float
    status: int
    ms: float
    events: tuple[tuple[str, float | None], ...] = ()


@dataclass(frozen=True)
class ArmSums:
    """Per variant of one event metric: units, Σx and Σx² over units (x: converted 0/1, or the value total)."""

    units: int
    x: float
    xx: float


@dataclass(frozen=True)
class AppBatchSums:
    """Per variant of one app ratio: batches (readings), Σx, Σx², Σd, Σd², Σxd of the counters' increases."""

    batches: int
    x: float
    xx: float
    d: float
    dd: float
    xd: float


@dataclass(frozen=True)
class PreSums:
    """ArmSums plus each unit's pre-experiment value y of the same metric (0 for a unit not seen before)."""

    units: int
    x: float
    xx: float
    y: float
    yy: float
    xy: float
    seen_before: int  # units with a record in the pre-period


@dataclass(frozen=True)
class ArmTraffic:
    requests: int
    errors: int
    buckets: dict[float, int]  # latency upper bound (ms) -> requests at most that slow (not cumulative)


def _row(r: sqlite3.Row) -> ExperimentRow:
    return ExperimentRow(
        r["id"],
        r["service"],
        r["salt"],
        r["hypothesis"],
        json.loads(r["spec"]),
        r["control"],
        r["treatment"],
        r["state"],
        r["started_at"],
        r["ended_at"],
        r["decision"],
        r["reason"],
        json.loads(r["result"]) if r["result"] else None,
    )


class ExperimentTables:
    """Store methods for experiments (mixed into Store, which owns `db` and `transaction`)."""

    db: sqlite3.Connection

    def insert_experiment(
        self,
        service: str,
        salt: str,
        hypothesis: str,
        spec: dict[str, Any],
        control: str,
        treatment: str,
        now: float,
    ) -> int:
        cur = self.db.execute(
            "INSERT INTO experiments(service, salt, hypothesis, spec, control, treatment, state, started_at)"
            " VALUES (?, ?, ?, ?, ?, ?, 'running', ?)",
            (service, salt, hypothesis, json.dumps(spec), control, treatment, now),
        )
        return int(cur.lastrowid or 0)

    def update_experiment(
        self,
        experiment: int,
        state: str,
        *,
        decision: str | None = None,
        reason: str | None = None,
        result: dict[str, Any] | None = None,
        ended_at: float | None = None,
    ) -> None:
        self.db.execute(
            "UPDATE experiments SET state=?, decision=COALESCE(?, decision), reason=COALESCE(?, reason),"
            " result=COALESCE(?, result), ended_at=COALESCE(?, ended_at) WHERE id=?",
            (state, decision, reason, json.dumps(result) if result is not None else None, ended_at, experiment),
        )

    def experiment(self, experiment: int) -> ExperimentRow | None:
        row = self.db.execute("SELECT * FROM experiments WHERE id=?", (experiment,)).fetchone()
        return _row(row) if row else None

    def experiments(self, service: str | None = None, limit: int = 20) -> list[ExperimentRow]:
        """Newest first."""
        if service is None:
            rows = self.db.execute("SELECT * FROM experiments ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        else:
            rows = self.db.execute(
                "SELECT * FROM experiments WHERE service=? ORDER BY id DESC LIMIT ?", (service, limit)
            ).fetchall()
        return [_row(r) for r in rows]

    def running_experiments(self) -> list[ExperimentRow]:
        marks = ",".join("?" * len(RUNNING_STATES))
        rows = self.db.execute(
            f"SELECT * FROM experiments WHERE state IN ({marks}) ORDER BY id", RUNNING_STATES
        ).fetchall()
        return [_row(r) for r in rows]

    def running_experiment(self, service: str) -> ExperimentRow | None:
        return next((e for e in self.running_experiments() if e.service == service), None)

    # -- what Envoy logged --------------------------------------------------------------------

    def record_exposures(self, experiment: int, exposures: Iterable[Exposure], buckets_ms: list[float]) -> int:
        """Fold logged requests into the per-unit and per-variant sums; returns how many were folded."""
        n = 0
        traffic: dict[str, ArmTraffic] = {}
        for e in exposures:
            n += 1
            self.db.execute(
                "INSERT INTO experiment_units(experiment, unit, arm, first_seen, requests) VALUES (?, ?, ?, ?, 1)"
                " ON CONFLICT(experiment, unit) DO UPDATE SET requests = requests + 1",
                (experiment, e.unit, e.arm, e.ts),
            )
            for event, value in e.events:
                self.db.execute(
                    "INSERT INTO experiment_unit_events(experiment, unit, event, count, total) VALUES (?, ?, ?, 1, ?)"
                    " ON CONFLICT(experiment, unit, event) DO UPDATE SET count = count + 1, total = total + ?",
                    (experiment, e.unit, event, value or 0.0, value or 0.0),
                )
            t = traffic.get(e.arm) or self.arm_traffic(experiment, e.arm)
            bound = next((b for b in buckets_ms if e.ms <= b), float("inf"))
            buckets = dict(t.buckets)
            buckets[bound] = buckets.get(bound, 0) + 1
            traffic[e.arm] = ArmTraffic(t.requests + 1, t.errors + (e.status >= 500 or e.status == 0), buckets)
        for arm, t in traffic.items():
            self.db.execute(
                "INSERT OR REPLACE INTO experiment_traffic(experiment, arm, requests, errors, buckets)"
                " VALUES (?, ?, ?, ?, ?)",
                (experiment, arm, t.requests, t.errors, json.dumps(sorted(t.buckets.items()))),
            )
        return n

    def arm_traffic(self, experiment: int, arm: str) -> ArmTraffic:
        row = self.db.execute(
            "SELECT requests, errors, buckets FROM experiment_traffic WHERE experiment=? AND arm=?", (experiment, arm)
        ).fetchone()
        if row is None:
            return ArmTraffic(0, 0, {})
        return ArmTraffic(row[0], row[1], {float(b): int(c) for b, c in json.loads(row[2])})

    def arm_units(self, experiment: int) -> dict[str, int]:
        rows = self.db.execute(
            "SELECT arm, COUNT(*) FROM experiment_units WHERE experiment=? GROUP BY arm", (experiment,)
        ).fetchall()
        return {r[0]: int(r[1]) for r in rows}

    def unit_requests(self, experiment: int) -> tuple[int, int]:
        """(requests logged, units) over both variants."""
        row = self.db.execute(
            "SELECT COALESCE(SUM(requests), 0), COUNT(*) FROM experiment_units WHERE experiment=?", (experiment,)
        ).fetchone()
        return int(row[0]), int(row[1])

    def arm_events(self, experiment: int, event: str) -> dict[str, int]:
        """Per variant: how many times the event was reported (all units)."""
        rows = self.db.execute(
            "SELECT u.arm, SUM(e.count) FROM experiment_unit_events e JOIN experiment_units u"
            " ON u.experiment = e.experiment AND u.unit = e.unit WHERE e.experiment=? AND e.event=? GROUP BY u.arm",
            (experiment, event),
        ).fetchall()
        return {r[0]: int(r[1] or 0) for r in rows}

    def arm_sums(self, experiment: int, event: str, conversion: bool) -> dict[str, ArmSums]:
        """Per variant, over its units: converted (count > 0 as 1) or the value total per unit."""
        x = "1.0" if conversion else "e.total"
        rows = self.db.execute(
            f"SELECT u.arm, COUNT(*), SUM({x}), SUM({x} * {x}) FROM experiment_unit_events e"
            " JOIN experiment_units u ON u.experiment = e.experiment AND u.unit = e.unit"
            " WHERE e.experiment=? AND e.event=? GROUP BY u.arm",
            (experiment, event),
        ).fetchall()
        found = {r[0]: (float(r[2] or 0.0), float(r[3] or 0.0)) for r in rows}
        units = self.arm_units(experiment)
        return {arm: ArmSums(n, *found.get(arm, (0.0, 0.0))) for arm, n in units.items()}

    def arm_sums_with_pre(self, experiment: int, pre: int, event: str, conversion: bool) -> dict[str, PreSums]:
        """`arm_sums` with each unit's value of the same metric in experiment `pre` (CUPED's covariate).

        A unit the pre-period did not see has y = 0; `seen_before` counts those it saw."""
        x = "CASE WHEN e.count > 0 THEN 1.0 ELSE 0.0 END" if conversion else "COALESCE(e.total, 0.0)"
        y = "CASE WHEN p.count > 0 THEN 1.0 ELSE 0.0 END" if conversion else "COALESCE(p.total, 0.0)"
        rows = self.db.execute(
            f"SELECT u.arm, COUNT(*), SUM({x}), SUM({x} * {x}), SUM({y}), SUM({y} * {y}), SUM({x} * {y}),"
            " SUM(q.unit IS NOT NULL)"
            " FROM experiment_units u"
            " LEFT JOIN experiment_unit_events e ON e.experiment = u.experiment AND e.unit = u.unit AND e.event = ?"
            " LEFT JOIN experiment_units q ON q.experiment = ? AND q.unit = u.unit"
            " LEFT JOIN experiment_unit_events p ON p.experiment = ? AND p.unit = u.unit AND p.event = ?"
            " WHERE u.experiment = ? GROUP BY u.arm",
            (event, pre, pre, event, experiment),
        ).fetchall()
        out: dict[str, PreSums] = {}
        for r in rows:
            x_, xx_, y_, yy_, xy_ = (float(v or 0.0) for v in r[2:7])
            out[r[0]] = PreSums(int(r[1]), x_, xx_, y_, yy_, xy_, int(r[7] or 0))
        return out

    def add_app_batches(self, experiment: int, metric: str, batches: dict[str, tuple[float, float]]) -> None:
        """One batch per variant: the increase (x, d) of the numerator and denominator since the last reading."""
        for arm, (x, d) in batches.items():
            self.db.execute(
                "INSERT INTO experiment_app_sums(experiment, metric, arm, batches, x, xx, d, dd, xd)"
                " VALUES (?, ?, ?, 1, ?, ?, ?, ?, ?) ON CONFLICT(experiment, metric, arm) DO UPDATE SET"
                " batches = batches + 1, x = x + excluded.x, xx = xx + excluded.xx, d = d + excluded.d,"
                " dd = dd + excluded.dd, xd = xd + excluded.xd",
                (experiment, metric, arm, x, x * x, d, d * d, x * d),
            )

    def app_sums(self, experiment: int, metric: str) -> dict[str, AppBatchSums]:
        rows = self.db.execute(
            "SELECT arm, batches, x, xx, d, dd, xd FROM experiment_app_sums WHERE experiment=? AND metric=?",
            (experiment, metric),
        ).fetchall()
        return {r[0]: AppBatchSums(int(r[1]), *(float(v) for v in r[2:])) for r in rows}

    def unit_arm(self, experiment: int, unit: str) -> str | None:
        row = self.db.execute(
            "SELECT arm FROM experiment_units WHERE experiment=? AND unit=?", (experiment, unit)
        ).fetchone()
        return None if row is None else str(row[0])

    def add_experiment_point(self, experiment: int, ts: float, data: dict[str, Any]) -> None:
        self.db.execute(
            "INSERT INTO experiment_points(experiment, ts, data) VALUES (?, ?, ?)", (experiment, ts, json.dumps(data))
        )

    def experiment_points(self, experiment: int) -> list[tuple[float, dict[str, Any]]]:
        rows = self.db.execute(
            "SELECT ts, data FROM experiment_points WHERE experiment=? ORDER BY ts", (experiment,)
        ).fetchall()
        return [(float(r[0]), json.loads(r[1])) for r in rows]
