"""A real Prometheus for `shiploop up --prometheus`: started, supervised and stopped by the daemon.

It scrapes the project every 5 s with the config `shiploop prometheus-config`
prints (file_sd targets the daemon keeps current), evaluates the alerting rules
`shiploop alerts export` prints (`alerts.yml`, shown on its /alerts page) and keeps
its data in `.shiploop/prometheus/data`. It runs in its own session on 127.0.0.1 and is
recorded in the store, so a daemon restarted after a crash adopts it; a dead
one is started again on the same port (a new one when that port is taken),
with back-off.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from shiploop.errors import Unavailable
from shiploop.procs import free_port, port_free, process_start_time, reap_later, terminate_group
from shiploop.telemetry.alerts import alert_rules
from shiploop.telemetry.scrape_config import prometheus_config
from shiploop.telemetry.targets import targets_dir, write_atomically

ENV_BINARY = "SHIPLOOP_PROMETHEUS"
RESTART_BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0)


def prometheus_binary() -> str:
    """The Prometheus to run: $SHIPLOOP_PROMETHEUS, else `prometheus` on PATH."""
    configured = os.environ.get(ENV_BINARY)
    if configured:
        if not (os.path.isfile(configured) and os.access(configured, os.X_OK)):
            raise Unavailable(
                f"{ENV_BINARY}={configured} is not an executable file",
                hint=f"point it at a prometheus binary, or unset it: unset {ENV_BINARY}",
            )
        return configured
    found = shutil.which("prometheus")
    if found is None:
        raise Unavailable(
            "prometheus is not installed (up --prometheus needs it)",
            hint=f"install it: sudo apt-get install prometheus (Debian), or set {ENV_BINARY}=/path/to/prometheus",
        )
    return found


@dataclass
class PrometheusProcess:
    pid: int
    start_time: int
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return process_start_time(self.pid) == self.start_time

    def to_json(self) -> str:
        return json.dumps({"pid": self.pid, "start_time": self.start_time, "port": self.port})

    @classmethod
    def from_json(cls, text: str) -> PrometheusProcess:
        d = json.loads(text)
        return cls(int(d["pid"]), int(d["start_time"]), int(d["port"]))


class ManagedPrometheus:
    """One Prometheus for the project. `tick()` restarts it if it died; `stop()` ends it."""

    def __init__(self, state_dir: Path, project: str, binary: str, log_path: Path) -> None:
        self.dir = targets_dir(state_dir)
        self.config_path = self.dir / "prometheus.yml"
        self.rules_path = self.dir / "alerts.yml"  # shiploop's alerting rules (telemetry.alerts)
        self.data_dir = self.dir / "data"
        self.state_dir = state_dir
        self.project = project
        self.binary = binary
        self.log_path = log_path
        self.process: PrometheusProcess | None = None
        self.restarts = 0
        self._quick_deaths = 0  # deaths in a row soon after a start: the back-off grows with them
        self._started_at = 0.0
        self._restart_at: float | None = None

    @property
    def url(self) -> str | None:
        return self.process.url if self.process is not None else None

    def start(self, port: int | None = None) -> PrometheusProcess:
        self.dir.mkdir(parents=True, exist_ok=True)
        write_atomically(self.rules_path, alert_rules())
        write_atomically(
            self.config_path, prometheus_config(self.state_dir, self.project, rule_files=(self.rules_path,))
        )
        port = port if port is not None and port_free(port) else free_port()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        args = [
            self.binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.data_dir}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=2d",
        ]
        with open(self.log_path, "ab") as log:
            proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        reap_later(proc)
        start_time = process_start_time(proc.pid)
        if start_time is None:
            raise Unavailable(f"prometheus exited at once; see {self.log_path}")
        self.process = PrometheusProcess(proc.pid, start_time, port)
        self._started_at = time.monotonic()
        return self.process

    def adopt(self, recorded: PrometheusProcess) -> bool:
        """Take over the Prometheus a previous daemon started, if it still runs."""
        if not recorded.alive():
            return False
        self.process = recorded
        return True

    def tick(self, now: float | None = None) -> PrometheusProcess | None:
        """Start it again if it died (with back-off); the new process, or None if nothing changed."""
        now = time.monotonic() if now is None else now
        if self.process is None or self.process.alive():
            return None
        if self._restart_at is None:
            # A Prometheus that ran a minute died of something passing: start it at once.
            self._quick_deaths = self._quick_deaths + 1 if now - self._started_at < 60 else 0
            self._restart_at = now + (
                RESTART_BACKOFF_S[min(self._quick_deaths, len(RESTART_BACKOFF_S)) - 1] if self._quick_deaths else 0.0
            )
        if now < self._restart_at:
            return None
        self._restart_at = None
        try:
            started = self.start(self.process.port)
        except (OSError, Unavailable):
            self._started_at = now  # counts as a quick death at the next look
            return None
        self.restarts += 1
        return started

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.alive():
            terminate_group(process.pid, 10.0)
