"""Process helpers: identity by (pid, start time), group termination, reaping.

A pid alone can be reused by the OS; pid plus the kernel's start time names one
process for its whole life, which is what lets a restarted daemon re-adopt the
processes its predecessor started. The start time comes from psutil (portable;
on Linux it reads /proc/PID/stat as we used to), as an integer in hundredths of
a second since the epoch: the kernel counts in clock ticks of 10 ms, so the
value is the same on every read. psutil is imported when first needed: the CLI
imports this module for `status` and must start fast.

Process groups and signals are POSIX: on other systems shiploop says so.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from shiploop.errors import Invalid, Unavailable

POSIX = hasattr(os, "killpg")


def require_posix() -> None:
    if not POSIX:
        raise Unavailable(
            f"services run in POSIX process groups, which {sys.platform} does not have",
            hint="run shiploop on Linux (on Windows: in WSL)",
        )


def process_start_time(pid: int) -> int | None:
    """The start time of a live process (hundredths of a second since the epoch), None if gone or a zombie."""
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
            return None
        return round(proc.create_time() * 100)
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None


def is_running(pid: int, start_time: int) -> bool:
    return process_start_time(pid) == start_time


def terminate_group(pid: int, timeout_s: float = 5.0) -> None:
    """SIGTERM the process group led by `pid`, SIGKILL it if it outlives `timeout_s`."""
    require_posix()
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
    import psutil

    for proc in psutil.process_iter(["status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
                return True
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return False


def reap_later(proc: subprocess.Popen[bytes]) -> None:
    """Wait for a child in a daemon thread so its exit never leaves a zombie."""
    threading.Thread(target=proc.wait, name=f"reap-{proc.pid}", daemon=True).start()


# Ports we listen on are picked below the kernel's ephemeral range. A port from that range
# (what binding port 0 returns) is also handed to outgoing connections, so one can take it
# between our pick and our bind: a gateway restarted in a parallel test run lost its port so.
# SHIPLOOP_PORT_RANGE=FIRST-LAST narrows the choice (a firewall's opening; each test worker
# its own share, so that two workers never pick the same port).
_LISTEN_PORTS_FROM = 15000


def _ephemeral_range_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def listen_port_range() -> range:
    spec = os.environ.get("SHIPLOOP_PORT_RANGE", "").strip()
    if not spec:
        below = _ephemeral_range_start()
        return range(_LISTEN_PORTS_FROM, below) if below - _LISTEN_PORTS_FROM >= 1000 else range(0)
    first, sep, last = spec.partition("-")
    if not (sep and first.strip().isdigit() and last.strip().isdigit() and 1024 <= int(first) <= int(last) <= 65535):
        raise Invalid(
            f"SHIPLOOP_PORT_RANGE is {spec!r}: expected FIRST-LAST between 1024 and 65535",
            hint="e.g. export SHIPLOOP_PORT_RANGE=20000-20999, or unset it",
        )
    return range(int(first), int(last) + 1)


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Nothing listens on `port` now (a bind to it succeeds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


# Ports this process picked or was told are taken, and when: a port is free when picked and
# bound later (a replica's once it starts, the gateway's once Envoy does), so a second pick in
# between could return it again. A daemon picks its replicas', Envoy's stats and its API's ports
# while its gateway port (claimed) waits for Envoy: in full runs of the suite one start in a few
# hundred failed with "address already in use" before this.
_PICKED: dict[int, float] = {}
PICKED_HOLD_S = 120.0


def claim_port(port: int) -> None:
    """Tell free_port that `port` is this process's, bound or not: it is not picked again."""
    _PICKED[port] = time.monotonic()


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now, picked at random from listen_port_range(), and not one
    this process picked or claimed in the last PICKED_HOLD_S seconds."""
    import random

    candidates = listen_port_range()
    now = time.monotonic()

    def usable(port: int) -> bool:
        return now - _PICKED.get(port, float("-inf")) >= PICKED_HOLD_S and port_free(port, host)

    # Random probes, each port as likely as any other free one. A sweep from a random start
    # (used before) picked the port just past a block of bound ones far more often: two
    # processes choosing before either binds (a gateway port picked by the CLI, the API port
    # by the daemon) met there, and one start failed with "address already in use".
    # Shuffling the whole range (about 17,000 ports) took 42 ms a call.
    for _ in range(min(64, len(candidates))):
        if usable(port := random.choice(candidates)):
            _PICKED[port] = now
            return port
    for port in candidates:  # nearly full: every port once
        if usable(port):
            _PICKED[port] = now
            return port
    if os.environ.get("SHIPLOOP_PORT_RANGE", "").strip():
        raise Unavailable(
            f"no free port in SHIPLOOP_PORT_RANGE={os.environ['SHIPLOOP_PORT_RANGE']}",
            hint="widen it, or unset it",
        )
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
