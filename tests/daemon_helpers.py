"""A temporary project driven through the real CLI and daemon, always taken down."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from shiploop.paths import running_daemon
from shiploop.procs import free_port, is_running
from tests import loopback

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

    def ups_at_once(self, n: int = 2) -> list[tuple[int, str, str]]:
        """`n` `shiploop up --detach` started together on the project's port: (exit code, stdout, stderr) of each."""
        ups = [
            subprocess.Popen(
                [*SHIPLOOP, "up", "--detach", "--port", str(self.port)],
                cwd=self.root,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=dict(os.environ, COLUMNS="200"),
            )
            for _ in range(n)
        ]
        return [(u.wait(120), *u.communicate()) for u in ups]

    def write_auth(self) -> dict[str, str]:
        """The header the API's writes need: the project's token, as the CLI sends it."""
        return {"Authorization": f"Bearer {(self.root / '.shiploop' / 'token').read_text().strip()}"}

    def api_get(self, path: str, **params: Any) -> Any:
        """GET from the daemon's API (reads are open): what the `--json` commands print,
        without starting a CLI process. Tests poll status every few milliseconds, and a
        CLI process costs 0.2-0.5 s of CPU: polling through it kept both cores busy."""
        port = self.daemon_info()["api_port"]
        r = loopback.get(f"http://127.0.0.1:{port}{path}", params=params, timeout=30)
        r.raise_for_status()
        return r.json()

    def status(self) -> dict[str, Any]:
        return dict(self.api_get("/v1/status"))

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
        return self._kv_record("envoy")

    def prometheus_info(self) -> dict[str, Any] | None:
        """The Prometheus the store records (`up --prometheus`): pid, start_time, ..."""
        return self._kv_record("prometheus")

    def _kv_record(self, key: str) -> dict[str, Any] | None:
        rows = self._query(f"SELECT value FROM kv WHERE key='{key}'")
        return dict(json.loads(rows[0][0])) if rows else None

    def recorded_processes(self) -> list[tuple[int, int]]:
        """(pid, start time) of every replica, Envoy and Prometheus the store knows of."""
        procs = [(int(p), int(s)) for p, s in self._query("SELECT pid, start_time FROM replicas") if p]
        for record in (self.envoy_info(), self.prometheus_info()):
            if record:
                procs.append((record["pid"], record["start_time"]))
        return procs

    def running(self, procs: list[tuple[int, int]]) -> list[tuple[int, int]]:
        return [p for p in procs if is_running(*p)]


def create_project(root: Path, name: str = "testproj") -> Project:
    """An empty project (a shiploop.yaml and nothing else) at `root`."""
    p = Project(root)
    p.root.mkdir(parents=True)
    (p.root / "shiploop.yaml").write_text(f"name: {name}\n")
    return p


def take_down(p: Project) -> None:
    """`shiploop down`, then fail if any process the store recorded still runs.

    A running daemon is asked through the API as the command asks it (POST /v1/down, then
    wait for the daemon to exit): a CLI process per teardown cost ~1 s of CPU, and the
    command itself is run where it is the subject (test_supervision, test_controlplane_daemon,
    test_examples). Anything else (no daemon, or one that does not answer) goes through
    the command, which ends what the store recorded without a daemon; with no store there
    is nothing it would stop."""
    stored = (p.root / ".shiploop" / "state.db").exists()
    procs = p.recorded_processes() if stored else []
    # Without a store and a daemon the command has nothing to stop ("shiploop was not running").
    if not _down_through_api(p) and stored:
        p.cli("down", check=False)
    assert p.running(procs) == [], "down left processes behind"


def _down_through_api(p: Project) -> bool:
    info = running_daemon(p.root)
    if info is None:
        return False
    try:
        r = loopback.post(f"http://127.0.0.1:{info['api_port']}/v1/down", json={}, headers=p.write_auth(), timeout=60)
    except (OSError, httpx.HTTPError):
        return False
    deadline = time.monotonic() + 30  # as long as `shiploop down` waits
    while r.status_code == 200 and is_running(info["pid"], info["start_time"]):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return r.status_code == 200


@contextmanager
def temp_project(root: Path, name: str = "testproj") -> Iterator[Project]:
    p = create_project(root, name)
    try:
        yield p
    finally:
        take_down(p)
