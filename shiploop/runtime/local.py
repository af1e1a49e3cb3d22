"""Runs versions as local processes: replicas on free ports, health checks, restarts.

Each replica runs in its own session (process group) with stdout and stderr
going straight to its log file, so it does not depend on the daemon: a daemon
killed with -9 leaves replicas serving, and the next daemon adopts them by pid
and start time from the store.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from shiploop.errors import ShiploopError
from shiploop.loopback import loopback_client
from shiploop.procs import free_port, is_running, process_start_time, reap_later, terminate_group
from shiploop.store import ReplicaRow, Store

_BACKOFF_S = (0.5, 1, 2, 4, 8, 16, 30)
_UNHEALTHY_AFTER = 3  # failed probes in a row before a ready replica leaves the endpoints
# A replica healthy this long has recovered: its next crash restarts it after the
# shortest delay again, not after the 30 s its earlier crashes had built up.
HEALTHY_RESETS_BACKOFF_S = 60.0
_LOG_TAIL_BYTES = 16384


def restart_delay(crash_streak: int) -> float:
    """Seconds before restarting a replica that has crashed `crash_streak` times since it was last healthy."""
    return float(_BACKOFF_S[min(crash_streak, len(_BACKOFF_S) - 1)])


@dataclass(frozen=True)
class RunConfig:
    """How to run one version: taken from the version's own service.yaml at deploy time."""

    command: list[str]
    env: dict[str, str]
    cwd: Path
    health_path: str
    health_timeout_s: float


@dataclass
class Replica:
    service: str
    version: str
    idx: int
    port: int
    log_path: Path
    config: RunConfig
    pid: int | None = None
    start_time: int | None = None
    ready: bool = False
    restarts: int = 0  # in the version's whole life (shown in status)
    crash_streak: int = 0  # crashes since it was last healthy for HEALTHY_RESETS_BACKOFF_S (sets the back-off)
    healthy_since: float | None = None
    failed_probes: int = 0
    next_start_at: float = 0.0
    last_exit: str | None = None
    exit_code: int | None = None  # of the last exit, when known (not for an adopted process)
    exited_at: float | None = None
    stopped: bool = False  # taken out by stop(): a probe still in flight must not restart it
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def key(self) -> tuple[str, str]:
        return (self.service, self.version)

    def alive(self) -> bool:
        return self.pid is not None and self.start_time is not None and is_running(self.pid, self.start_time)

    def row(self) -> ReplicaRow:
        return ReplicaRow(
            self.service,
            self.version,
            self.idx,
            self.port,
            self.pid,
            self.start_time,
            self.restarts,
            str(self.log_path),
        )


def _resolve_command(command: list[str]) -> list[str]:
    # "python" in a service.yaml means the interpreter shiploop runs on: on a
    # fresh machine only python3 may exist, and the venv's python has the deps.
    if command and command[0] in ("python", "python3"):
        return [sys.executable, *command[1:]]
    return command


class LocalRuntime:
    def __init__(
        self,
        state_dir: Path,
        store: Store,
        on_event: Callable[[str, str, str, dict[str, Any]], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clock = clock  # monotonic seconds: back-off, readiness deadlines
        self.logs_dir = state_dir / "logs"
        self.store = store
        self.on_event = on_event  # (service, kind, message, evidence)
        self.replicas: list[Replica] = []
        self._http = loopback_client(timeout=2.0)  # health probes

    async def close(self) -> None:
        await self._http.aclose()

    # -- lifecycle ---------------------------------------------------------------

    def start(self, service: str, version: str, config: RunConfig, count: int) -> None:
        for idx in range(count):
            log = self.logs_dir / service / f"{version}-{idx}.log"
            replica = Replica(service, version, idx, free_port(), log, config)
            self._spawn(replica)
            self.replicas.append(replica)

    def adopt(self, configs: dict[tuple[str, str], RunConfig]) -> list[Replica]:
        """Re-attach to the replicas recorded in the store; start again those that died meanwhile."""
        adopted = []
        for row in self.store.replicas():
            config = configs.get((row.service, row.version))
            if config is None:
                continue
            replica = Replica(
                row.service,
                row.version,
                row.idx,
                row.port,
                Path(row.log_path),
                config,
                pid=row.pid,
                start_time=row.start_time,
                restarts=row.restarts,
            )
            if not replica.alive():
                replica.pid = None
                self._spawn(replica)
            self.replicas.append(replica)
            adopted.append(replica)
        return adopted

    async def stop(self, service: str, version: str) -> None:
        doomed = [r for r in self.replicas if r.key == (service, version)]
        self.replicas = [r for r in self.replicas if r.key != (service, version)]
        for r in doomed:
            r.stopped = True
        await asyncio.gather(*(asyncio.to_thread(self._terminate, r) for r in doomed))

    async def stop_all(self) -> None:
        doomed, self.replicas = self.replicas, []
        for r in doomed:
            r.stopped = True
        await asyncio.gather(*(asyncio.to_thread(self._terminate, r) for r in doomed))

    def _terminate(self, replica: Replica) -> None:
        if replica.pid is not None and replica.alive():
            terminate_group(replica.pid, 5.0)

    def _spawn(self, replica: Replica) -> None:
        replica.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.update(replica.config.env)
        env.update(
            PORT=str(replica.port),
            SHIPLOOP_SERVICE=replica.service,
            SHIPLOOP_VERSION=replica.version,
            PYTHONUNBUFFERED="1",
        )
        with open(replica.log_path, "ab") as log:
            banner = f"--- shiploop: starting {replica.service}@{replica.version}#{replica.idx} on port {replica.port}"
            log.write(banner.encode() + b"\n")
            log.flush()
            try:
                proc = subprocess.Popen(
                    _resolve_command(replica.config.command),
                    cwd=replica.config.cwd,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as e:
                raise ShiploopError(
                    f"{replica.service}: cannot start {replica.config.command[0]!r}: {e.strerror}",
                    where=f"{replica.service}/service.yaml run.command",
                    hint="the command must be an executable on PATH or a path inside the service directory",
                ) from e
        replica.proc = proc
        replica.pid = proc.pid
        replica.start_time = process_start_time(proc.pid)
        replica.ready = False
        replica.failed_probes = 0
        reap_later(proc)
        self.store.save_replica(replica.row())

    # -- supervision ----------------------------------------------------------------

    async def tick(self, now: float | None = None) -> bool:
        """Probe every replica once, restart the dead; True if any replica's readiness changed."""
        now = self.clock() if now is None else now
        before = {id(r): r.ready for r in self.replicas}
        await asyncio.gather(*(self._check(r, now) for r in list(self.replicas)))
        return any(before.get(id(r)) != r.ready for r in self.replicas)

    async def _check(self, r: Replica, now: float) -> None:
        if r.stopped:
            return
        if r.pid is None:
            if now >= r.next_start_at:
                self._spawn(r)
            return
        if not r.alive():
            code = _exit_code(r.proc)
            r.exit_code = code
            r.exited_at = now
            r.last_exit = f"exit code {code}" if code is not None else "exited"
            delay = restart_delay(r.crash_streak)
            r.crash_streak += 1
            r.restarts += 1
            r.healthy_since = None
            r.pid = None
            r.ready = False
            r.next_start_at = now + delay
            self.store.save_replica(r.row())
            self.on_event(
                r.service,
                "replica-crashed",
                f"{r.service}@{r.version}#{r.idx} {r.last_exit}; restart {r.restarts} in {delay}s",
                {"version": r.version, "replica": r.idx, "restarts": r.restarts, "log": str(r.log_path)},
            )
            return
        healthy = await self._probe(r)
        if r.stopped:
            return
        if healthy:
            r.failed_probes = 0
            r.ready = True
            if r.healthy_since is None:
                r.healthy_since = now
            elif now - r.healthy_since >= HEALTHY_RESETS_BACKOFF_S:
                r.crash_streak = 0
        else:
            r.healthy_since = None
            r.failed_probes += 1
            if not r.ready or r.failed_probes >= _UNHEALTHY_AFTER:
                r.ready = False

    async def _probe(self, r: Replica) -> bool:
        try:
            resp = await self._http.get(
                f"http://127.0.0.1:{r.port}{r.config.health_path}", timeout=r.config.health_timeout_s
            )
        except httpx.HTTPError:
            return False
        return 200 <= resp.status_code < 300

    async def wait_ready(self, service: str, version: str, timeout_s: float) -> None:
        """Return once every replica of the version is ready; fail with its log's tail otherwise."""
        deadline = self.clock() + timeout_s
        restarts_before = {id(r): r.restarts for r in self.replicas if r.key == (service, version)}
        while True:
            mine = [r for r in self.replicas if r.key == (service, version)]
            await asyncio.gather(*(self._check(r, self.clock()) for r in mine))
            if mine and all(r.ready for r in mine):
                return
            crashed = [r for r in mine if r.restarts > restarts_before.get(id(r), 0)]
            if crashed or not mine or self.clock() > deadline:
                r = (crashed or mine)[0]
                why = (
                    f"exited ({r.last_exit})"
                    if crashed
                    else f"not healthy on {r.config.health_path} after {timeout_s:.0f}s"
                )
                raise ShiploopError(
                    f"{service}@{version} {why}: {last_line(r.log_path)}",
                    hint=f"see the log: shiploop logs {service} --version {version}",
                )
            await asyncio.sleep(0.1)

    def endpoints(self, service: str, version: str) -> list[int]:
        return [r.port for r in self.replicas if r.key == (service, version) and r.ready]

    def counts(self, service: str, version: str) -> tuple[int, int]:
        mine = [r for r in self.replicas if r.key == (service, version)]
        return sum(r.ready for r in mine), len(mine)

    def health(self, service: str, version: str) -> dict[str, Any]:
        """What shows a crash loop: restarts of the version's replicas, the last exit code,
        and the last line its logs hold (of the replica that exited last, else the newest log)."""
        mine = [r for r in self.replicas if r.key == (service, version)]
        exited = sorted((r for r in mine if r.exited_at is not None), key=lambda r: r.exited_at or 0.0)
        if exited:
            log: Path | None = exited[-1].log_path
        else:
            logs = [r.log_path for r in mine if r.log_path.exists()]
            log = max(logs, key=lambda p: p.stat().st_mtime) if logs else None
        return {
            "restarts": sum(r.restarts for r in mine),
            "last_exit_code": exited[-1].exit_code if exited else None,
            "last_log_line": last_line(log) if log is not None else None,
        }


def _exit_code(proc: subprocess.Popen[bytes] | None) -> int | None:
    """The exit code of a child that has exited; None for an adopted process (not our child)."""
    if proc is None:
        return None
    try:
        # The reaper thread holds the wait lock: poll() would say None. The process is
        # gone, so its status is there at once.
        return proc.wait(timeout=0.5)
    except subprocess.TimeoutExpired:
        return None


def last_line(path: Path) -> str:
    """The last line the app wrote (not our start banners), read from the file's tail only."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, 2) - _LOG_TAIL_BYTES))
            text = f.read().decode(errors="replace")
    except FileNotFoundError:
        return "no log"
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("--- shiploop")]
    return lines[-1].strip()[:300] if lines else "no output"
