"""SQLite state in .shiploop/state.db (WAL): what is deployed, where it runs, what happened.

The daemon is the only writer; the CLI reads through the daemon's API. Every
controller decision is an event row with its evidence as JSON.

When the disk refuses writes (read-only, full, I/O errors), a change of desired
state (a deployment, a route) raises as usual. A record of what happened or
runs (an event, a replica's pid) is kept in memory instead and written, in
order, with the next record or `flush_pending`, so supervision goes on from
memory. `write_error` says why the store is not writable until a write
succeeds again, so status can show it.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shiploop.errors import Unavailable
from shiploop.store.experiments import EXPERIMENT_SCHEMA, ExperimentTables

SCHEMA = """
CREATE TABLE IF NOT EXISTS versions (
    service TEXT NOT NULL, id TEXT NOT NULL, path TEXT NOT NULL, created_at REAL NOT NULL,
    PRIMARY KEY (service, id));
CREATE TABLE IF NOT EXISTS deployments (
    service TEXT NOT NULL, version TEXT NOT NULL, track TEXT NOT NULL, weight INTEGER NOT NULL,
    replicas INTEGER NOT NULL, spec TEXT NOT NULL, state TEXT NOT NULL, created_at REAL NOT NULL,
    PRIMARY KEY (service, version));
CREATE TABLE IF NOT EXISTS replicas (
    service TEXT NOT NULL, version TEXT NOT NULL, idx INTEGER NOT NULL, port INTEGER NOT NULL,
    pid INTEGER, start_time INTEGER, restarts INTEGER NOT NULL DEFAULT 0, log_path TEXT NOT NULL,
    PRIMARY KEY (service, version, idx));
CREATE TABLE IF NOT EXISTS header_routes (
    service TEXT NOT NULL, header TEXT NOT NULL, value TEXT NOT NULL, version TEXT NOT NULL,
    PRIMARY KEY (service, header, value));
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, service TEXT, kind TEXT NOT NULL,
    message TEXT NOT NULL, evidence TEXT);
CREATE TABLE IF NOT EXISTS rollouts (
    id INTEGER PRIMARY KEY AUTOINCREMENT, service TEXT NOT NULL, candidate TEXT NOT NULL,
    baseline TEXT NOT NULL, state TEXT NOT NULL, step INTEGER NOT NULL, data TEXT NOT NULL,
    started_at REAL NOT NULL, updated_at REAL NOT NULL, outcome_reason TEXT);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (name TEXT PRIMARY KEY, sha256 TEXT NOT NULL UNIQUE, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS intercepts (
    id TEXT PRIMARY KEY, service TEXT NOT NULL, header TEXT NOT NULL, value TEXT NOT NULL,
    host TEXT NOT NULL, port INTEGER NOT NULL, owner TEXT NOT NULL, pid INTEGER, kind TEXT NOT NULL,
    created_at REAL NOT NULL, expires_at REAL NOT NULL, UNIQUE (service, header, value));
"""


@dataclass
class DeploymentRow:
    service: str
    version: str
    track: str
    weight: int
    replicas: int
    spec: dict[str, Any]
    state: str
    created_at: float


@dataclass(frozen=True)
class InterceptRow:
    """A personal route held by a lease: requests matching (header, value) go to host:port.

    header == "" is a global intercept (`--all`): every request to the service."""

    id: str
    service: str
    header: str
    value: str
    host: str
    port: int
    owner: str
    pid: int | None
    kind: str  # "intercept" or "dev"
    created_at: float
    expires_at: float


@dataclass
class ReplicaRow:
    service: str
    version: str
    idx: int
    port: int
    pid: int | None
    start_time: int | None
    restarts: int
    log_path: str


@dataclass
class RolloutRow:
    id: int
    service: str
    candidate: str
    baseline: str
    state: str
    step: int
    data: dict[str, Any]  # the rollout record's body (policy, steps, ...), owned by shiploop.rollout
    started_at: float
    updated_at: float
    outcome_reason: str | None


def rollout_row(r: sqlite3.Row) -> RolloutRow:
    """A `rollouts` table row (read with sqlite3.Row) as a RolloutRow."""
    return RolloutRow(
        r["id"],
        r["service"],
        r["candidate"],
        r["baseline"],
        r["state"],
        r["step"],
        json.loads(r["data"]),
        r["started_at"],
        r["updated_at"],
        r["outcome_reason"],
    )


# SQLite's primary result codes that mean "the disk will not take this write".
_NOT_WRITABLE = {
    3: "permission denied",  # SQLITE_PERM
    8: "read-only",  # SQLITE_READONLY
    10: "disk I/O error",  # SQLITE_IOERR
    13: "disk full",  # SQLITE_FULL
    14: "cannot open the database file",  # SQLITE_CANTOPEN
}
_MAX_PENDING_EVENTS = 10_000
_INSERT_EVENT = "INSERT INTO events(ts, service, kind, message, evidence) VALUES (?, ?, ?, ?, ?)"


class _Connection(sqlite3.Connection):
    """A connection that remembers whether the disk takes writes: the last write
    failure until a write succeeds again."""

    write_error: str | None = None
    write_error_since: float | None = None

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        try:
            cur = super().execute(sql, parameters)
        except sqlite3.OperationalError as e:
            failure = self._failed(e)
            if failure is None:
                raise
            raise failure from e
        if self.write_error is not None and not self.in_transaction and sql.lstrip()[:6].upper() != "SELECT":
            self.write_error = self.write_error_since = None
        return cur

    def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor:
        try:
            return super().executemany(sql, parameters)
        except sqlite3.OperationalError as e:
            failure = self._failed(e)
            if failure is None:
                raise
            raise failure from e

    def _failed(self, e: sqlite3.OperationalError) -> StoreNotWritable | None:
        """StoreNotWritable (one line for the user) if the disk refused the write, else None."""
        why = _NOT_WRITABLE.get(getattr(e, "sqlite_errorcode", 0) & 0xFF)
        if why is None:
            return None
        if self.write_error is None:
            self.write_error_since = time.time()
        self.write_error = why if str(e) == why else f"{why} ({e})"
        return StoreNotWritable(
            f"the state store is not writable: {self.write_error}",
            hint="free disk space or make .shiploop writable; shiploop retries by itself (see: shiploop status)",
        )


class StoreNotWritable(Unavailable, sqlite3.OperationalError):
    """The disk refused a write to the state store (read-only, full, I/O error)."""


class Store(ExperimentTables):
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = path
        # The database and its -wal and -shm files are for the owner alone (they hold run.env).
        old_umask = os.umask(0o077)
        try:
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, factory=_Connection)
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA journal_mode=WAL")
        finally:
            os.umask(old_umask)
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA + EXPERIMENT_SCHEMA)
        self._depth = 0  # nesting of transaction()
        self._pending_events: deque[tuple[Any, ...]] = deque(maxlen=_MAX_PENDING_EVENTS)
        self._pending_replicas: dict[tuple[str, str, int], ReplicaRow] = {}

    @property
    def write_error(self) -> str | None:
        """Why the last write failed, until one succeeds again; None while the store is writable."""
        return self.db.write_error if isinstance(self.db, _Connection) else None

    @property
    def write_error_since(self) -> float | None:
        return self.db.write_error_since if isinstance(self.db, _Connection) else None

    @property
    def pending_writes(self) -> int:
        """Records (events, replica rows) kept in memory because the disk refused them."""
        return len(self._pending_events) + len(self._pending_replicas)

    def close(self) -> None:
        self.db.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """`with store.transaction():` makes several writes one atomic change; nests."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self.db.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield
        except BaseException:
            # A failed write (disk full, I/O error) may already have ended the transaction.
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise
        else:
            try:
                self.db.execute("COMMIT")
            except BaseException:
                # A COMMIT the disk refused may leave the transaction open (SQLITE_FULL
                # can); every later BEGIN would then fail even once the disk is back.
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                raise
        finally:
            self._depth = 0

    # -- key/value -------------------------------------------------------------

    def get(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM kv WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def put(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO kv(key, value) VALUES (?, ?)", (key, value))

    def delete(self, key: str) -> None:
        self.db.execute("DELETE FROM kv WHERE key=?", (key,))

    # -- versions --------------------------------------------------------------

    def add_version(self, service: str, vid: str, path: Path) -> None:
        self.db.execute(
            "INSERT OR IGNORE INTO versions(service, id, path, created_at) VALUES (?, ?, ?, ?)",
            (service, vid, str(path), time.time()),
        )

    def versions(self, service: str) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT id, path, created_at FROM versions WHERE service=? ORDER BY created_at", (service,)
        )
        return [dict(r) for r in rows]

    # -- deployments -------------------------------------------------------------

    def upsert_deployment(self, d: DeploymentRow) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO deployments VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (d.service, d.version, d.track, d.weight, d.replicas, json.dumps(d.spec), d.state, d.created_at),
        )

    def deployments(self, service: str | None = None) -> list[DeploymentRow]:
        sql = "SELECT * FROM deployments"
        args: tuple[Any, ...] = ()
        if service is not None:
            sql += " WHERE service=?"
            args = (service,)
        rows = self.db.execute(sql + " ORDER BY service, created_at", args)
        return [
            DeploymentRow(
                r["service"],
                r["version"],
                r["track"],
                r["weight"],
                r["replicas"],
                json.loads(r["spec"]),
                r["state"],
                r["created_at"],
            )
            for r in rows
        ]

    def set_weights(self, service: str, weights: dict[str, int]) -> None:
        with self.transaction():
            for version, weight in weights.items():
                self.db.execute(
                    "UPDATE deployments SET weight=? WHERE service=? AND version=?", (weight, service, version)
                )

    def set_track(self, service: str, version: str, track: str, weight: int, state: str = "running") -> None:
        self.db.execute(
            "UPDATE deployments SET track=?, weight=?, state=? WHERE service=? AND version=?",
            (track, weight, state, service, version),
        )

    def remove_deployment(self, service: str, version: str) -> None:
        for key in [k for k in self._pending_replicas if k[:2] == (service, version)]:
            del self._pending_replicas[key]
        with self.transaction():
            self.db.execute("DELETE FROM deployments WHERE service=? AND version=?", (service, version))
            self.db.execute("DELETE FROM replicas WHERE service=? AND version=?", (service, version))
            self.db.execute("DELETE FROM header_routes WHERE service=? AND version=?", (service, version))

    # -- replicas ----------------------------------------------------------------

    def save_replica(self, r: ReplicaRow) -> None:
        """Record a replica's process. If the disk refuses it, keep it for `flush_pending`
        (outside a transaction): the replica runs whether or not its record is written."""
        if self._depth:
            self._write_replica(r)
            return
        self._pending_replicas[(r.service, r.version, r.idx)] = r
        try:
            self.flush_pending()
        except sqlite3.OperationalError:
            if self.write_error is None:  # not the disk: let it show
                self._pending_replicas.pop((r.service, r.version, r.idx), None)
                raise

    def _write_replica(self, r: ReplicaRow) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO replicas VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (r.service, r.version, r.idx, r.port, r.pid, r.start_time, r.restarts, r.log_path),
        )

    def replicas(self) -> list[ReplicaRow]:
        rows = self.db.execute("SELECT * FROM replicas ORDER BY service, version, idx")
        return [ReplicaRow(*tuple(r)) for r in rows]

    # -- header routes -------------------------------------------------------------

    def set_header_route(self, service: str, header: str, value: str, version: str) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO header_routes VALUES (?, ?, ?, ?)", (service, header.lower(), value, version)
        )

    def remove_header_route(self, service: str, header: str, value: str | None) -> int:
        if value is None:
            cur = self.db.execute("DELETE FROM header_routes WHERE service=? AND header=?", (service, header.lower()))
        else:
            cur = self.db.execute(
                "DELETE FROM header_routes WHERE service=? AND header=? AND value=?", (service, header.lower(), value)
            )
        return cur.rowcount

    def header_routes(self, service: str) -> list[tuple[str, str, str]]:
        rows = self.db.execute(
            "SELECT header, value, version FROM header_routes WHERE service=? ORDER BY header, value", (service,)
        )
        return [(r[0], r[1], r[2]) for r in rows]

    # -- intercepts (personal routes held by leases) ----------------------------------

    def add_intercept(self, row: InterceptRow) -> None:
        """Insert `row`, replacing any row on the same (service, header, value)."""
        with self.transaction():
            self.db.execute(
                "DELETE FROM intercepts WHERE service=? AND header=? AND value=?", (row.service, row.header, row.value)
            )
            self.db.execute(
                "INSERT OR REPLACE INTO intercepts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    row.id,
                    row.service,
                    row.header,
                    row.value,
                    row.host,
                    row.port,
                    row.owner,
                    row.pid,
                    row.kind,
                    row.created_at,
                    row.expires_at,
                ),
            )

    def intercepts(self, service: str | None = None) -> list[InterceptRow]:
        sql = "SELECT * FROM intercepts"
        args: tuple[Any, ...] = ()
        if service is not None:
            sql, args = sql + " WHERE service=?", (service,)
        rows = self.db.execute(sql + " ORDER BY service, header, value", args)
        return [InterceptRow(*tuple(r)) for r in rows]

    def renew_intercept(self, intercept_id: str, now: float, expires_at: float) -> bool:
        """Extend a lease that has not lapsed; False if it is gone or lapsed (a lapsed one is swept)."""
        cur = self.db.execute(
            "UPDATE intercepts SET expires_at=? WHERE id=? AND expires_at>=?", (expires_at, intercept_id, now)
        )
        return cur.rowcount > 0

    def retarget_intercept(self, intercept_id: str, host: str, port: int) -> None:
        self.db.execute("UPDATE intercepts SET host=?, port=? WHERE id=?", (host, port, intercept_id))

    def remove_intercept(self, intercept_id: str) -> int:
        return self.db.execute("DELETE FROM intercepts WHERE id=?", (intercept_id,)).rowcount

    # -- per-user tokens of a shared host (only their SHA-256 is kept) -----------------

    def add_token(self, name: str, sha256: str, created_at: float) -> bool:
        """False if `name` already has a token."""
        cur = self.db.execute("INSERT OR IGNORE INTO tokens VALUES (?, ?, ?)", (name, sha256, created_at))
        return cur.rowcount > 0

    def tokens(self) -> list[tuple[str, float]]:
        return [(r[0], r[1]) for r in self.db.execute("SELECT name, created_at FROM tokens ORDER BY name")]

    def token_owner(self, sha256: str) -> str | None:
        row = self.db.execute("SELECT name FROM tokens WHERE sha256=?", (sha256,)).fetchone()
        return None if row is None else str(row[0])

    def remove_token(self, name: str) -> int:
        return self.db.execute("DELETE FROM tokens WHERE name=?", (name,)).rowcount

    # -- rollouts ------------------------------------------------------------------

    def insert_rollout(self, service: str, candidate: str, baseline: str, state: str, data: str, now: float) -> int:
        """A new rollout row at step 0; `data` is the record's body as JSON. Returns its id."""
        cur = self.db.execute(
            "INSERT INTO rollouts(service, candidate, baseline, state, step, data, started_at, updated_at)"
            " VALUES (?, ?, ?, ?, 0, ?, ?, ?)",
            (service, candidate, baseline, state, data, now, now),
        )
        return int(cur.lastrowid or 0)

    def update_rollout(
        self, rollout_id: int, state: str, step: int, data: str, updated_at: float, outcome_reason: str | None
    ) -> None:
        self.db.execute(
            "UPDATE rollouts SET state=?, step=?, data=?, updated_at=?, outcome_reason=? WHERE id=?",
            (state, step, data, updated_at, outcome_reason, rollout_id),
        )

    def rollout(self, rollout_id: int) -> RolloutRow | None:
        row = self.db.execute("SELECT * FROM rollouts WHERE id=?", (rollout_id,)).fetchone()
        return rollout_row(row) if row else None

    def rollouts(self, service: str, limit: int = 20) -> list[RolloutRow]:
        """The service's rollouts, newest first."""
        rows = self.db.execute(
            "SELECT * FROM rollouts WHERE service=? ORDER BY id DESC LIMIT ?", (service, limit)
        ).fetchall()
        return [rollout_row(r) for r in rows]

    def rollouts_in(self, states: Iterable[str]) -> list[RolloutRow]:
        """Every service's rollouts in one of `states`, oldest first."""
        wanted = [str(s) for s in states]
        marks = ",".join("?" * len(wanted))
        rows = self.db.execute(f"SELECT * FROM rollouts WHERE state IN ({marks}) ORDER BY id", wanted).fetchall()
        return [rollout_row(r) for r in rows]

    # -- events ------------------------------------------------------------------

    def event(
        self,
        service: str | None,
        kind: str,
        message: str,
        evidence: dict[str, Any] | None = None,
        ts: float | None = None,
    ) -> None:
        """Record an event. If the disk refuses the write, keep it in memory and write it
        (in order) with the next record or `flush_pending`; inside a transaction, raise."""
        row = (
            time.time() if ts is None else ts,
            service,
            kind,
            message,
            json.dumps(evidence) if evidence is not None else None,
        )
        if self._depth:
            self.db.execute(_INSERT_EVENT, row)
            return
        self._pending_events.append(row)
        try:
            self.flush_pending()
        except sqlite3.OperationalError:
            if self.write_error is None:  # not the disk: a bug or a lock, let it show
                self._pending_events.pop()
                raise

    def flush_pending(self) -> None:
        """Write the records kept while the disk refused writes; raises if it still does."""
        if not self._pending_events and not self._pending_replicas:
            return
        with self.transaction():
            for r in self._pending_replicas.values():
                self._write_replica(r)
            self.db.executemany(_INSERT_EVENT, list(self._pending_events))
        self._pending_replicas.clear()
        self._pending_events.clear()

    def events(self, service: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        sql = "SELECT * FROM events"
        args: tuple[Any, ...] = ()
        if service is not None:
            sql += " WHERE service=?"
            args = (service,)
        rows = self.db.execute(sql + " ORDER BY id DESC LIMIT ?", (*args, limit))
        out = []
        for r in rows:
            d = dict(r)
            d["evidence"] = json.loads(d["evidence"]) if d["evidence"] else None
            out.append(d)
        return list(reversed(out))
