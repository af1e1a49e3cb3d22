"""Where a project's state lives, and whether a daemon is running for it.

One place for these so the CLI can find the daemon without importing the
daemon, FastAPI or the controllers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shiploop.procs import is_running

STATE_DIR_NAME = ".shiploop"


@dataclass(frozen=True)
class ProjectPaths:
    root: Path

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR_NAME

    @property
    def db(self) -> Path:
        return self.state_dir / "state.db"

    @property
    def token(self) -> Path:
        return self.state_dir / "token"

    @property
    def daemon_record(self) -> Path:
        return self.state_dir / "daemon.json"

    @property
    def xds(self) -> Path:
        return self.state_dir / "xds"

    @property
    def logs(self) -> Path:
        return self.state_dir / "logs"

    @property
    def daemon_log(self) -> Path:
        return self.logs / "daemon.log"

    @property
    def versions(self) -> Path:
        return self.state_dir / "versions"


def state_dir_of(root: Path) -> Path:
    return ProjectPaths(root).state_dir


def running_daemon(root: Path) -> dict[str, Any] | None:
    """The live daemon's record ({pid, start_time, api_port, ...}), or None."""
    try:
        info = json.loads(ProjectPaths(root).daemon_record.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if not isinstance(info, dict):
        return None
    pid, start_time = info.get("pid"), info.get("start_time")
    if not isinstance(pid, int) or not isinstance(start_time, int) or not is_running(pid, start_time):
        return None
    return info
