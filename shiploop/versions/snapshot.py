"""Content-addressed snapshots of a service directory.

The version id is a hash of every file's relative path, executable bit and
bytes, for the files that .gitignore / .shiploopignore do not exclude. The same
content always gives the same id, and snapshotting it again copies nothing.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

ID_LENGTH = 12
ALWAYS_IGNORED = [".git/", ".shiploop/", ".venv/", "__pycache__/", "*.pyc", "node_modules/", ".DS_Store"]


@dataclass(frozen=True)
class Version:
    service: str
    id: str
    path: Path
    created: bool  # False when the snapshot already existed

    @property
    def label(self) -> str:
        return f"{self.service}@{self.id}"


class IgnoreRules:
    """A practical subset of gitignore: globs, `dir/` patterns, anchored `/x`, and `!` negation."""

    def __init__(self, patterns: list[str]) -> None:
        self.rules: list[tuple[bool, bool, bool, str]] = []  # (negate, dir_only, anchored, glob)
        for raw in patterns:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            line = line.lstrip("!")
            dir_only = line.endswith("/")
            line = line.rstrip("/")
            anchored = "/" in line
            self.rules.append((negate, dir_only, anchored, line.lstrip("/")))

    @classmethod
    def for_directory(cls, root: Path) -> IgnoreRules:
        patterns = list(ALWAYS_IGNORED)
        for name in (".gitignore", ".shiploopignore"):
            f = root / name
            if f.exists():
                patterns.extend(f.read_text().splitlines())
        return cls(patterns)

    def ignored(self, rel: str, is_dir: bool) -> bool:
        result = False
        name = rel.rsplit("/", 1)[-1]
        for negate, dir_only, anchored, glob in self.rules:
            if dir_only and not is_dir:
                continue
            target = rel if anchored else name
            if fnmatch.fnmatchcase(target, glob):
                result = not negate
        return result


def list_files(root: Path) -> list[str]:
    """Relative paths (posix) of the files a snapshot holds, sorted."""
    rules = IgnoreRules.for_directory(root)
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        prefix = "" if rel_dir == "." else rel_dir + "/"
        dirnames[:] = sorted(d for d in dirnames if not rules.ignored(prefix + d, True))
        out.extend(prefix + f for f in filenames if not rules.ignored(prefix + f, False))
    return sorted(out)


def content_id(root: Path, files: list[str]) -> str:
    h = hashlib.sha256()
    for rel in files:
        path = root / rel
        executable = os.stat(path).st_mode & stat.S_IXUSR
        h.update(f"{rel}\0{'x' if executable else '-'}\0".encode())
        with open(path, "rb") as f:
            h.update(hashlib.sha256(f.read()).digest())
    return h.hexdigest()[:ID_LENGTH]


def snapshot(service: str, source: Path, store_root: Path) -> Version:
    """Snapshot `source` under `store_root/<service>/<id>/`, reusing an existing one."""
    files = list_files(source)
    vid = content_id(source, files)
    target = store_root / service / vid
    if target.exists():
        return Version(service, vid, target, created=False)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Copy into a temporary sibling and rename, so a snapshot is never half there.
    tmp = Path(tempfile.mkdtemp(prefix=f".{vid}.", dir=target.parent))
    for rel in files:
        dest = tmp / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / rel, dest)
    try:
        os.rename(tmp, target)
    except OSError:
        # Someone else made the same snapshot meanwhile; theirs is identical.
        shutil.rmtree(tmp, ignore_errors=True)
        return Version(service, vid, target, created=False)
    return Version(service, vid, target, created=True)
