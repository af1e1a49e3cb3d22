"""A temporary project driven through the real CLI and daemon, always taken down."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from shiploop.procs import free_port, is_running

APPS = Path(__file__).parent / "apps"
SHIPLOOP = [sys.executable, "-m", "shiploop.cli"]


class Project:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def add_service(self, name: str, prefix: str, env: dict[str, str] | None = None, extra: str = "") -> Path:
        svc = self.root / name
        svc.mkdir(parents=True, exist_ok=True)
        shutil.copy(APPS / "echo_app.py", svc / "app.py")
        env_yaml = json.dumps(env or {})
        (svc / "service.yaml").write_text(
            f"name: {name}\nrun:\n  command: [python, app.py]\n  env: {env_yaml}\nreplicas: 2\n"
            f"routes:\n  - prefix: {prefix}\n{extra}"
        )
        return svc

    def set_env(self, name: str, env: dict[str, str]) -> None:
        path = self.root / name / "service.yaml"
        lines = path.read_text().splitlines()
        path.write_text(
            "\n".join(f"  env: {json.dumps(env)}" if ln.startswith("  env:") else ln for ln in lines) + "\n"
        )

    def cli(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [*SHIPLOOP, *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=dict(os.environ, COLUMNS="200"),
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"shiploop {' '.join(args)} exited {proc.returncode}: {proc.stderr}{proc.stdout}")
        return proc

    def status(self) -> dict[str, Any]:
        return dict(json.loads(self.cli("status", "--json").stdout))

    def versions(self, service: str) -> dict[str, dict[str, Any]]:
        svc = next(s for s in self.status()["services"] if s["name"] == service)
        return {v["track"]: v for v in svc["versions"]}

    def daemon_info(self) -> dict[str, int]:
        return dict(json.loads((self.root / ".shiploop" / "daemon.json").read_text()))

    def _query(self, sql: str) -> list[tuple[Any, ...]]:
        db = sqlite3.connect(self.root / ".shiploop" / "state.db")
        try:
            return list(db.execute(sql))
        finally:
            db.close()

    def envoy_info(self) -> dict[str, Any] | None:
        """The Envoy the store records: pid, start_time, admin_socket, log_path."""
        rows = self._query("SELECT value FROM kv WHERE key='envoy'")
        return dict(json.loads(rows[0][0])) if rows else None

    def recorded_processes(self) -> list[tuple[int, int]]:
        """(pid, start time) of every replica and Envoy the store knows of."""
        procs = [(int(p), int(s)) for p, s in self._query("SELECT pid, start_time FROM replicas") if p]
        envoy = self.envoy_info()
        if envoy:
            procs.append((envoy["pid"], envoy["start_time"]))
        return procs

    def running(self, procs: list[tuple[int, int]]) -> list[tuple[int, int]]:
        return [p for p in procs if is_running(*p)]
