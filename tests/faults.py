"""Helpers for fault tests: what a fault cost the users (requests lost, seconds of gap),
and the OS mechanisms that make a disk refuse writes."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

from shiploop.loadgen import Result


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
