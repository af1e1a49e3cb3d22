"""Process helpers: identity by (pid, start time), group termination, reaping.

A pid alone can be reused by the OS; pid plus the kernel's start time (field 22
of /proc/PID/stat) names one process for its whole life, which is what lets a
restarted daemon re-adopt the processes its predecessor started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path


def process_start_time(pid: int) -> int | None:
    """The start time of a live process in clock ticks since boot, None if gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may contain spaces and parentheses; split after it.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def is_running(pid: int, start_time: int) -> bool:
    return process_start_time(pid) == start_time


def terminate_group(pid: int, timeout_s: float = 5.0) -> None:
    """SIGTERM the process group led by `pid`, SIGKILL it if it outlives `timeout_s`."""
    start = process_start_time(pid)
    if start is None:
        return
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process_start_time(pid) != start and not _group_alive(pid):
            return
        time.sleep(0.02)
    _signal_group(pid, signal.SIGKILL)
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and process_start_time(pid) == start:
        time.sleep(0.02)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pgid, sig)
        except ProcessLookupError:
            pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    # Members that are zombies still count for killpg; check them properly.
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


def reap_later(proc: subprocess.Popen[bytes]) -> None:
    """Wait for a child in a daemon thread so its exit never leaves a zombie."""
    threading.Thread(target=proc.wait, name=f"reap-{proc.pid}", daemon=True).start()


def free_port(host: str = "127.0.0.1") -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
