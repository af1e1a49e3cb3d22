"""file_sd target groups: Envoy's stats per track by a stat-name filter, replicas labelled, written atomically."""

from __future__ import annotations

import json
import re
from pathlib import Path

from shiploop.telemetry.targets import (
    NOT_A_CLUSTER_STAT,
    ReplicaTarget,
    TargetFiles,
    envoy_groups,
    replica_groups,
)

STATS = [
    "cluster.web_abc123.upstream_rq_completed",
    "cluster.web_def456.upstream_rq_completed",
    "cluster.api-v2_0011aa.upstream_rq_time",
    "cluster.shiploop-admin.upstream_rq_completed",
    "cluster_manager.cds.version_text",
    "http.gateway.downstream_rq_total",
    "server.live",
    "clusterx.weird",
]


def matching(pattern: str) -> list[str]:
    return [s for s in STATS if re.search(pattern, s)]


def test_each_track_target_selects_exactly_its_clusters_and_one_more_takes_the_rest():
    groups = envoy_groups(
        "p", 9000, {"stable": [("web", "abc123"), ("api-v2", "0011aa")], "canary": [("web", "def456")]}
    )
    by_track = {g["labels"].get("track"): g["labels"]["__param_filter"] for g in groups}
    assert matching(by_track["stable"]) == [STATS[0], STATS[2]]
    assert matching(by_track["canary"]) == [STATS[1]]
    assert matching(by_track[None]) == STATS[4:]
    assert matching(NOT_A_CLUSTER_STAT) == STATS[4:]
    assert all(g["targets"] == ["127.0.0.1:9000"] and g["labels"]["project"] == "p" for g in groups)


def test_no_stats_listener_no_envoy_targets():
    assert envoy_groups("p", None, {"stable": [("web", "abc")]}) == []


def test_files_are_rewritten_only_on_change_and_never_seen_half_written(tmp_path: Path):
    files = TargetFiles(tmp_path / "prometheus")
    one = replica_groups("p", [ReplicaTarget("web", "abc", "stable", 0, 4001)])
    assert files.update({"replicas.json": one}) is True
    assert files.update({"replicas.json": one}) is False
    two = replica_groups(
        "p", [ReplicaTarget("web", "abc", "stable", 0, 4001), ReplicaTarget("web", "d", "canary", 1, 4002)]
    )
    assert files.update({"replicas.json": two}) is True
    written = json.loads((tmp_path / "prometheus" / "replicas.json").read_text())
    assert [g["labels"] for g in written] == [
        {"project": "p", "service": "web", "version": "abc", "track": "stable", "replica": "0"},
        {"project": "p", "service": "web", "version": "d", "track": "canary", "replica": "1"},
    ]
    assert sorted(p.name for p in (tmp_path / "prometheus").iterdir()) == ["replicas.json"]  # no temp file left
    files.clear()
    assert json.loads((tmp_path / "prometheus" / "replicas.json").read_text()) == []
