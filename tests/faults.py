"""Helpers for fault tests: a project under load that reports what a fault cost the users
(requests lost, seconds of gap), and the OS mechanisms that make a disk refuse writes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from shiploop.loadgen import LoadGenerator, Result, background_load
from tests import loopback
from tests.conftest import wait_until
from tests.daemon_helpers import Project, create_project, take_down


@dataclass
class Losses:
    """Collects failed requests from a load run (pass `record` as on_result)."""

    failures: list[Result] = field(default_factory=list)
    total: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, r: Result) -> None:
        with self._lock:
            self.total += 1
            if not r.ok:
                self.failures.append(r)

    def mark(self) -> tuple[int, int]:
        """(requests so far, failures so far): pass to `since` to count what came after."""
        with self._lock:
            return self.total, len(self.failures)

    def since(self, mark: tuple[int, int]) -> tuple[int, float]:
        """Requests lost after `mark`, and the seconds from the first failure to the last one."""
        with self._lock:
            failed = self.failures[mark[1] :]
        if not failed:
            return 0, 0.0
        return len(failed), max(r.done_at for r in failed) - min(r.scheduled_at for r in failed)


def can_mount() -> str | None:
    """Why tmpfs mounts are impossible here, or None."""
    if os.geteuid() != 0:
        return "needs root to mount a tmpfs (run as root, e.g. in the project's container)"
    if shutil.which("mount") is None:
        return "no mount command on this machine"
    return None


def can_chattr(directory: Path) -> str | None:
    """Why `chattr +i` cannot make files in `directory` refuse writes, or None."""
    if os.geteuid() != 0:
        return "needs root for chattr +i (CAP_LINUX_IMMUTABLE): chmod does not stop the owner's open files"
    if shutil.which("chattr") is None:
        return "no chattr command on this machine"
    probe = directory / ".chattr-probe"
    probe.write_text("x")
    try:
        r = subprocess.run(["chattr", "+i", str(probe)], capture_output=True, text=True)
        if r.returncode != 0:
            return f"chattr +i does not work on this file system: {r.stderr.strip()}"
        subprocess.run(["chattr", "-i", str(probe)], check=True)
    finally:
        probe.unlink(missing_ok=True)
    return None


def set_immutable(paths: list[Path], on: bool) -> None:
    """Make files refuse every write (even root's, even through open descriptors) or take them back.

    The store's -shm file is left alone: SQLite maps it, and a write to a mapped
    immutable file is a SIGBUS, which is not the fault under test."""
    flag = "+i" if on else "-i"
    for p in paths:
        if p.exists():
            subprocess.run(["chattr", flag, str(p)], check=True)


def store_files(state_dir: Path) -> list[Path]:
    return [state_dir / "state.db", state_dir / "state.db-wal"]


def mount_tmpfs(path: Path, size: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)], check=True)


def unmount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path) -> Path:
    """Fill the file system holding `directory` until a write fails with ENOSPC; returns the filler."""
    filler = directory / "filler"
    chunk = b"\0" * (1 << 20)
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(chunk)
        except OSError:
            pass
        # The last partial megabyte: fill to the byte.
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
    return filler


RPS = 100  # the open-loop load under every fault
ENVOY_GAP_BOUND_S = 2.0


def new_project(root: Path) -> Project:
    p = create_project(root)
    p.add_service("echo", "/echo/")
    return p


def restore_and_take_down(p: Project) -> None:
    set_immutable(store_files(p.root / ".shiploop"), on=False)
    take_down(p)


@contextmanager
def serving_project(root: Path) -> Iterator[Project]:
    """A project serving one service (two replicas) through its own daemon and Envoy."""
    p = new_project(root)
    p.cli("up", "--detach", "--port", str(p.port))
    try:
        yield p
    finally:
        restore_and_take_down(p)


class Scenario:
    """Load on the gateway for one fault; reports what the users lost."""

    def __init__(self, project: Project, name: str) -> None:
        self.project = project
        self.name = name
        self.losses = Losses()
        self.load: LoadGenerator | None = None

    def __enter__(self) -> Scenario:
        self._cm = background_load(f"{self.project.url}/echo/x", rps=RPS, timeout_s=2.0, on_result=self.losses.record)
        self.load = self._cm.__enter__()
        self.load.wait_until(lambda r: r.total >= RPS // 2, 10)
        return self

    def settle(self, seconds: float = 1.0) -> None:
        """Let the load run on for `seconds` more of requests."""
        assert self.load is not None
        target = self.losses.total + int(seconds * RPS)
        self.load.wait_until(lambda r: r.total >= target, seconds + 10)

    def __exit__(self, *exc: object) -> None:
        self._cm.__exit__(*exc)
        lost, gap = self.losses.since((0, 0))
        print(f"\nfault {self.name}: {lost} of {self.losses.total} requests lost, gap {gap:.2f}s")

    @property
    def lost(self) -> int:
        return self.losses.since((0, 0))[0]


def api_status(p: Project) -> dict[str, Any]:
    return dict(loopback.get(f"http://127.0.0.1:{p.daemon_info()['api_port']}/v1/status").json())


def stable_ready(p: Project) -> int:
    versions = api_status(p)["services"][0]["versions"]
    return int(next(v["ready"] for v in versions if v["track"] == "stable"))


def replica_pids(p: Project) -> list[int]:
    envoy = p.envoy_info()
    return sorted(pid for pid, _ in p.recorded_processes() if envoy is None or pid != envoy["pid"])


def kill_a_replica_and_see_it_restarted(p: Project) -> None:
    """Supervision is alive: a replica killed now is back (in the store too) within seconds."""
    victim = replica_pids(p)[0]
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: victim not in replica_pids(p) and stable_ready(p) == 2, 15, interval=0.1, what="a restart")


def serves(url: str) -> bool:
    try:
        return loopback.get(url, timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False
