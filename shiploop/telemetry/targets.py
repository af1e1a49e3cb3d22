"""Prometheus targets as `file_sd` files the daemon rewrites, atomically, when they change.

Three files under `.shiploop/prometheus/`, one per scrape job
(telemetry.scrape_config): the daemon's API, Envoy's stats listener, and every
replica. Prometheus watches them and picks up a change within seconds, so a
scrape config written once keeps working as replicas come and go, ports move
after a restart, and versions change track.

Envoy knows a cluster's service and version (stats tags) but not its track.
So the Envoy job has one target per track, each asking the stats listener for
that track's clusters only (`filter`, a regex on stat names, passed by the
`__param_filter` label) and labelled with the track; one more target takes
every stat that is not a cluster's (the listener, the server).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shiploop.naming import cluster_name

TARGET_FILES = ("daemon.json", "envoy.json", "replicas.json")
# RE2 has no negative lookahead: "a name that does not start with `cluster.`", spelled out.
NOT_A_CLUSTER_STAT = r"^([^c]|c[^l]|cl[^u]|clu[^s]|clus[^t]|clust[^e]|cluste[^r]|cluster[^.])"


@dataclass(frozen=True)
class ReplicaTarget:
    service: str
    version: str
    track: str
    replica: int
    port: int


def targets_dir(state_dir: Path) -> Path:
    return state_dir / "prometheus"


def daemon_groups(project: str, api_port: int | None) -> list[dict[str, Any]]:
    if api_port is None:
        return []
    return [{"targets": [f"127.0.0.1:{api_port}"], "labels": {"project": project}}]


def envoy_groups(
    project: str, stats_port: int | None, tracks: dict[str, list[tuple[str, str]]]
) -> list[dict[str, Any]]:
    """`tracks`: track -> the (service, version) pairs on it."""
    if stats_port is None:
        return []
    address = [f"127.0.0.1:{stats_port}"]
    groups = [{"targets": address, "labels": {"project": project, "__param_filter": NOT_A_CLUSTER_STAT}}]
    for track, pairs in sorted(tracks.items()):
        if not pairs:
            continue
        names = "|".join(sorted(re.escape(cluster_name(s, v)) for s, v in pairs))
        groups.append(
            {
                "targets": address,
                "labels": {"project": project, "track": track, "__param_filter": rf"^cluster\.({names})\."},
            }
        )
    return groups


def replica_groups(project: str, replicas: list[ReplicaTarget]) -> list[dict[str, Any]]:
    return [
        {
            "targets": [f"127.0.0.1:{r.port}"],
            "labels": {
                "project": project,
                "service": r.service,
                "version": r.version,
                "track": r.track,
                "replica": str(r.replica),
            },
        }
        for r in sorted(replicas, key=lambda r: (r.service, r.version, r.replica))
    ]


def write_atomically(path: Path, text: str) -> None:
    """Write `text` to `path` so a reader sees the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class TargetFiles:
    """The three file_sd files; each is rewritten only when its content changes."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._written: dict[str, str] = {}
        self.rewrites = 0  # files rewritten since start (tests and the bench read it)

    def update(self, groups: dict[str, list[dict[str, Any]]]) -> bool:
        """`groups`: file name -> its target groups. True if any file was rewritten."""
        self.directory.mkdir(parents=True, exist_ok=True)
        changed = False
        for name, content in groups.items():
            text = json.dumps(content, indent=1, sort_keys=True) + "\n"
            path = self.directory / name
            if self._written.get(name) == text and path.exists():
                continue
            write_atomically(path, text)
            self._written[name] = text
            self.rewrites += 1
            changed = True
        return changed

    def clear(self) -> None:
        """Nothing to scrape (the daemon is going down): empty lists, so Prometheus drops the targets."""
        self.update({name: [] for name in TARGET_FILES})
