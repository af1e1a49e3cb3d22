"""Processes a project started whose records are lost: found in /proc by what marks them.

The store records every replica and Envoy, but a record can be missing: the
daemon was killed between starting a process and writing its row, or the disk
refused the row and the daemon died before it could write it again. `down`
without a daemon looks for those too, by marks no other process has:
- a replica runs in a snapshot of this project (cwd under .shiploop/versions)
  with SHIPLOOP_VERSION in its environment (a shell a user opened there has no such variable);
- Envoy runs on this project's bootstrap file.
Linux only, like the rest of the process handling (/proc).
"""

from __future__ import annotations

import os
from pathlib import Path

from shiploop.paths import ProjectPaths


def unrecorded_processes(paths: ProjectPaths, recorded: set[int]) -> list[int]:
    """Pids of this project's replicas and Envoy that are still running and not in `recorded`."""
    versions = str(paths.versions.resolve()) + os.sep
    bootstrap = str(paths.xds.resolve() / "bootstrap.json").encode()
    me = os.getpid()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in recorded or int(entry.name) == me:
            continue
        try:
            if _is_replica(entry, versions) or bootstrap in (entry / "cmdline").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def _is_replica(proc: Path, versions: str) -> bool:
    if not (os.readlink(proc / "cwd") + os.sep).startswith(versions):
        return False
    return any(v.startswith(b"SHIPLOOP_VERSION=") for v in (proc / "environ").read_bytes().split(b"\0"))
