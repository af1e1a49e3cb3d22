"""The rollout controller's records kept in the cluster: one ConfigMap, a key per rollout.

The RolloutController writes every transition before it acts (rollout/controller.py);
here that write is an update of the ConfigMap `shiploop-rollouts`, so a controller
pod that dies mid-rollout leaves the record (its steps with their readings, the last
evidence, the events) for the next leader, which resumes the rollout where it stood.

Key `rollout-<id>.json`: the row as the daemon's SQLite keeps it (the record's body in
`data`) and the rollout's events, newest last, at most MAX_EVENTS. Ended rollouts beyond
the newest KEEP_ENDED per service are dropped: a ConfigMap holds at most 1 MiB, and a
record with its evidence is a few kB. One ConfigMap, rendered by deploy, so the Role
names it (create cannot be limited to a name).

Writes inside `transaction()` go out as one update when it ends.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

from shiploop.k8s.configmaps import ConfigMaps, Data
from shiploop.k8s.manifests import ROLLOUTS_CONFIGMAP
from shiploop.naming import ACTIVE_ROLLOUT_STATES, RolloutState
from shiploop.store import RolloutRow

PREFIX = "rollout-"
MAX_EVENTS = 100
KEEP_ENDED = 10
EVENT_IDS = 1_000_000  # event ids per rollout
_FINISHING = {str(RolloutState.PROMOTING), str(RolloutState.ROLLING_BACK)}


def _key(rollout_id: int) -> str:
    return f"{PREFIX}{rollout_id}.json"


def _entries(data: Data) -> dict[int, dict[str, Any]]:
    out = {}
    for key, text in data.items():
        if key.startswith(PREFIX) and key.endswith(".json"):
            entry = json.loads(text)
            out[int(entry["row"]["id"])] = entry
    return out


def _row(entry: dict[str, Any]) -> RolloutRow:
    return RolloutRow(**entry["row"])


class ClusterRolloutStore:
    def __init__(self, configmaps: ConfigMaps, name: str = ROLLOUTS_CONFIGMAP) -> None:
        self.configmaps = configmaps
        self.name = name
        self._pending: list[Any] = []  # changes to the data, applied in order at the end of a transaction
        self._depth = 0

    # -- reads --------------------------------------------------------------------------------------

    def _all(self) -> dict[int, dict[str, Any]]:
        return _entries(self.configmaps.read(self.name))

    def rollout(self, rollout_id: int) -> RolloutRow | None:
        entry = self._all().get(rollout_id)
        return _row(entry) if entry else None

    def rollouts(self, service: str, limit: int = 20) -> list[RolloutRow]:
        """The service's rollouts, newest first."""
        entries = self._all()
        rows = [_row(entries[i]) for i in sorted(entries, reverse=True) if entries[i]["row"]["service"] == service]
        return rows[:limit]

    def rollouts_in(self, states: Iterable[str]) -> list[RolloutRow]:
        """Every service's rollouts in one of `states`, oldest first."""
        wanted = {str(s) for s in states}
        entries = self._all()
        return [_row(entries[i]) for i in sorted(entries) if entries[i]["row"]["state"] in wanted]

    def events(self, service: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The newest `limit` events of the kept rollouts (of `service`, or all), oldest first, as the daemon's."""
        found = [
            e
            for entry in self._all().values()
            if service is None or entry["row"]["service"] == service
            for e in entry["events"]
        ]
        return sorted(found, key=lambda e: (e["ts"] or 0, e["id"]))[-limit:]

    # -- writes -------------------------------------------------------------------------------------

    def _write(self, change: Any) -> None:
        self._pending.append(change)
        if not self._depth:
            self._flush()

    def _flush(self) -> None:
        changes, self._pending = self._pending, []
        if not changes:
            return

        def apply(data: Data) -> Data:
            entries = _entries(data)
            for change in changes:
                change(entries)
            return {k: v for k, v in data.items() if not k.startswith(PREFIX)} | {
                _key(i): json.dumps(e, sort_keys=True) for i, e in _kept(entries).items()
            }

        self.configmaps.change(self.name, apply)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
        if not self._depth:
            self._flush()

    def insert_rollout(self, service: str, candidate: str, baseline: str, state: str, data: str, now: float) -> int:
        """A new rollout at step 0; its id is one more than any kept (read when written, so a retried
        write after a 409 takes the next free one)."""
        assigned: list[int] = []

        def change(entries: dict[int, dict[str, Any]]) -> None:
            new_id = max(entries, default=0) + 1
            row = RolloutRow(new_id, service, candidate, baseline, str(state), 0, json.loads(data), now, now, None)
            entries[new_id] = {"row": asdict(row), "events": []}
            assigned[:] = [new_id]

        self._write(change)
        if self._depth:
            self._flush_now()
        return assigned[0]

    def _flush_now(self) -> None:
        depth, self._depth = self._depth, 0
        try:
            self._flush()
        finally:
            self._depth = depth

    def update_rollout(
        self, rollout_id: int, state: str, step: int, data: str, updated_at: float, outcome_reason: str | None
    ) -> None:
        def change(entries: dict[int, dict[str, Any]]) -> None:
            entry = entries.get(rollout_id)
            if entry is None:
                return  # dropped as old: nothing to keep
            entry["row"].update(state=str(state), step=step, data=json.loads(data), updated_at=updated_at,
                                outcome_reason=outcome_reason)  # fmt: skip

        self._write(change)

    def event(
        self,
        service: str | None,
        kind: str,
        message: str,
        evidence: dict[str, Any] | None = None,
        ts: float | None = None,
    ) -> None:
        """A rollout's event (evidence names it as `rollout`) goes into its record; others are logged only."""
        rollout_id = (evidence or {}).get("rollout")
        if rollout_id is None:
            return

        def change(entries: dict[int, dict[str, Any]]) -> None:
            entry = entries.get(int(rollout_id))
            if entry is None:
                return
            # Ids the API can follow (`after`): the rollout's id, then the event's number within it.
            seq = entry.get("event_seq", 0) + 1
            entry["event_seq"] = seq
            event = {"id": int(rollout_id) * EVENT_IDS + seq, "ts": ts, "service": service, "kind": kind,
                     "message": message, "evidence": evidence}  # fmt: skip
            entry["events"] = [*entry["events"], event][-MAX_EVENTS:]

        self._write(change)


def _kept(entries: dict[int, dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Every active or finishing rollout, and the newest KEEP_ENDED ended ones of each service."""
    active = {str(s) for s in ACTIVE_ROLLOUT_STATES} | _FINISHING
    ended_seen: dict[str, int] = {}
    kept = {}
    for i in sorted(entries, reverse=True):
        row = entries[i]["row"]
        if row["state"] not in active:
            ended_seen[row["service"]] = ended_seen.get(row["service"], 0) + 1
            if ended_seen[row["service"]] > KEEP_ENDED:
                continue
        kept[i] = entries[i]
    return kept
