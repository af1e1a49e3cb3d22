"""Keeping the file_sd files in step with the control plane: a supervisor tick hook."""

from __future__ import annotations

from shiploop.server.controlplane import ControlPlane
from shiploop.telemetry.targets import (
    ReplicaTarget,
    TargetFiles,
    daemon_groups,
    envoy_groups,
    replica_groups,
    targets_dir,
)


class TargetPublisher:
    def __init__(self, cp: ControlPlane, api_port: int | None = None) -> None:
        self.cp = cp
        self.api_port = api_port
        self.files = TargetFiles(targets_dir(cp.state_dir))

    async def tick(self) -> None:
        self.update()

    def update(self) -> bool:
        cp = self.cp
        project = cp.project.name
        track_of = {(d.service, d.version): str(d.track) for d in cp.store.deployments()}
        tracks: dict[str, list[tuple[str, str]]] = {}
        for (service, version), track in track_of.items():
            tracks.setdefault(track, []).append((service, version))
        # Only replicas that answer health checks: one starting or crashed would show as a target down.
        replicas = [
            ReplicaTarget(r.service, r.version, track_of[r.key], r.idx, r.port)
            for r in cp.runtime.replicas
            if r.ready and r.key in track_of
        ]
        return self.files.update(
            {
                "daemon.json": daemon_groups(project, self.api_port),
                "envoy.json": envoy_groups(project, cp.gateway.stats_port, tracks),
                "replicas.json": replica_groups(project, replicas),
            }
        )
