"""`shiploop logs`: replica log files straight from disk, daemon up or down.

Each replica writes to .shiploop/logs/SERVICE/VERSION-N.log, so the logs of a
failed, rolled-back or retired version are still there to read. A version is
named as everywhere else: an id, a unique prefix, or a track (resolved from
the store, read-only).
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from shiploop.errors import Invalid, NotFound
from shiploop.paths import ProjectPaths

_LOG_NAME = re.compile(r"^(?P<version>[0-9a-f]+)-(?P<idx>\d+)\.log$")
TRACKS = ("stable", "canary", "shadow")


@dataclass(frozen=True)
class LogFile:
    path: Path
    version: str
    idx: int

    @property
    def replica(self) -> str:
        return f"{self.version}#{self.idx}"


def log_files(paths: ProjectPaths, service: str, version: str | None = None) -> list[LogFile]:
    """The service's log files (of one version, when given), oldest first."""
    found = []
    directory = paths.logs / service
    for path in directory.glob("*.log") if directory.is_dir() else []:
        m = _LOG_NAME.match(path.name)
        if m and (version is None or m["version"] == version):
            found.append(LogFile(path, m["version"], int(m["idx"])))
    return sorted(found, key=lambda f: (_mtime(f.path), f.version, f.idx))


def known_versions(paths: ProjectPaths, service: str) -> set[str]:
    ids = {f.version for f in log_files(paths, service)}
    built = paths.versions / service
    if built.is_dir():
        ids.update(p.name for p in built.iterdir() if not p.name.startswith("."))
    return ids


def resolve_version(paths: ProjectPaths, service: str, ref: str) -> str:
    """A version id from an id, a unique prefix or a track name."""
    if ref in TRACKS:
        version = _track_version(paths, service, ref)
        if version is None:
            raise NotFound(f"{service} has no {ref} version now", hint=f"see its versions: shiploop versions {service}")
        return version
    ids = known_versions(paths, service)
    if not ids:
        raise NotFound(f"{service} has no logs yet", hint="see the services with: shiploop status")
    matches = sorted(v for v in ids if v.startswith(ref))
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise NotFound(
            f"{service} has no version matching '{ref}'", hint=f"see its versions: shiploop versions {service}"
        )
    raise Invalid(f"'{ref}' matches {len(matches)} versions of {service}: {', '.join(matches)}", hint="give more of it")


def _track_version(paths: ProjectPaths, service: str, track: str) -> str | None:
    if not paths.db.exists():
        return None
    try:
        db = sqlite3.connect(f"file:{paths.db}?mode=ro", uri=True, timeout=2.0)
        try:
            row = db.execute("SELECT version FROM deployments WHERE service=? AND track=?", (service, track)).fetchone()
        finally:
            db.close()
    except sqlite3.Error:
        return None
    return str(row[0]) if row else None


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def tail(files: list[LogFile], lines: int) -> Iterator[tuple[LogFile, str]]:
    """The last `lines` lines of each file (none for 0), file by file, oldest file first."""
    if lines <= 0:
        return
    for f in files:
        try:
            text = f.path.read_text(errors="replace")
        except OSError:
            continue
        for line in text.splitlines()[-lines:]:
            yield f, line


def follow(
    list_files: Callable[[], list[LogFile]],
    emit: Callable[[float, LogFile, str], None],
    poll_s: float = 0.2,
    should_stop: Callable[[], bool] = lambda: False,
    on_ready: Callable[[], None] = lambda: None,
) -> None:
    """Print what replicas write from now on, new replicas included, stamped with when it was read.

    Lines read in one poll are merged by that time across replicas, in file order within one.
    """
    offsets = {f.path: _size(f.path) for f in list_files()}
    on_ready()
    while not should_stop():
        now = time.time()
        for f in list_files():
            start = offsets.get(f.path, 0)  # a file that appeared since we began: from its start
            try:
                with open(f.path, "rb") as fh:
                    fh.seek(start)
                    data = fh.read()
            except OSError:
                continue
            complete = data[: data.rfind(b"\n") + 1]  # a half-written line waits for its end
            offsets[f.path] = start + len(complete)
            for line in complete.decode(errors="replace").splitlines():
                emit(now, f, line)
        time.sleep(poll_s)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
