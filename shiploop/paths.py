"""Where a project's state lives, and whether a daemon is running for it.

One place for these so the CLI can find the daemon without importing the
daemon, FastAPI or the controllers.
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shiploop.errors import Conflict, Invalid, ShiploopError
from shiploop.procs import is_running

STATE_DIR_NAME = ".shiploop"
# Files the daemon creates are for its owner alone: state.db holds each
# version's run.env, the token authorises changes, the admin socket stops Envoy.
PRIVATE_UMASK = 0o077
# sun_path holds 108 bytes with its terminating NUL.
_MAX_SOCKET_PATH = 107


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

    @property
    def lock(self) -> Path:
        """Held (flock) by the daemon for its whole life: one daemon per project."""
        return self.state_dir / "daemon.lock"


def admin_socket_path(state_dir: Path) -> Path:
    """Envoy's admin socket: in the 0700 state directory, or, when that path is too
    long for a unix socket, in a 0700 directory of this user's under the temp dir."""
    path = state_dir / "envoy-admin.sock"
    if len(os.fsencode(path)) <= _MAX_SOCKET_PATH:
        return path
    import hashlib  # only here: every CLI command imports this module (hashlib loads OpenSSL, ~5 ms)
    import tempfile

    digest = hashlib.sha256(os.fsencode(state_dir.resolve())).hexdigest()[:16]
    return private_dir(Path(tempfile.gettempdir()) / f"shiploop-{os.getuid()}") / f"{digest}.sock"


def private_dir(path: Path) -> Path:
    """Create `path` (and parents) if needed and make it 0700; refuse one another user owns."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise Invalid(
            f"{path} is not a directory of yours (uid {os.getuid()}): it must hold shiploop's private state",
            hint=f"remove it, or give it back to you: sudo chown -R {os.getuid()} {path}",
        )
    if stat.S_IMODE(st.st_mode) != 0o700:
        path.chmod(0o700)
    return path


def secure_state_dir(paths: ProjectPaths) -> None:
    """Make the state directory 0700 and what the daemon keeps in it 0600 (0700 for
    directories), including state left by versions of shiploop that made it 0644."""
    private_dir(paths.state_dir)
    for entry in paths.state_dir.iterdir():
        _tighten(entry)
    for tree in (paths.logs, paths.xds):
        if tree.is_dir():
            for sub in tree.rglob("*"):
                _tighten(sub)


def _tighten(path: Path) -> None:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        return
    if stat.S_ISDIR(st.st_mode):
        want = 0o700
    else:
        # Keep the owner's execute bit (snapshot scripts); drop everyone else's bits.
        want = stat.S_IMODE(st.st_mode) & 0o700 | 0o600
    if stat.S_IMODE(st.st_mode) != want:
        try:
            path.chmod(want)
        except PermissionError:
            raise Invalid(
                f"cannot make {path} private: it is not yours",
                hint=f"give it back to you: sudo chown -R {os.getuid()} {path.parent}",
            ) from None


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


def lock_project(paths: ProjectPaths) -> int:
    """Take the project's lock (flock on .shiploop/daemon.lock) and return its descriptor;
    the lock lasts until the descriptor is closed or the process ends, however it ends.

    Raises Conflict naming the holder's pid if another process holds it. The
    descriptor is not inherited by children (Python's default), so replicas and
    Envoy, which outlive the daemon, never hold it."""
    private_dir(paths.state_dir)
    fd = os.open(paths.lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise Conflict(
            f"another shiploop (pid {holder}) holds this project's lock {paths.lock}",
            hint="it is starting or running: see shiploop status, or stop it with shiploop down",
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def find_root(start: Path) -> Path:
    """The nearest directory at or above `start` holding shiploop.yaml."""
    for d in (start.resolve(), *start.resolve().parents):
        if (d / "shiploop.yaml").exists():
            return d
    raise ShiploopError(
        f"no shiploop.yaml in {start.resolve()} or above",
        hint="run this inside a project, or create one with: shiploop init",
    )
