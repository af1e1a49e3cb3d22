"""Fakes of the parts of a ControlPlane that telemetry's StateReader reads (its store is real).

Named as fakes: they stand in for the runtime and the gateway, which a unit test and
bench/metrics_cost.py (1,000 services) do not start.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shiploop.gateway.gateway import Durations
from shiploop.store import Store


@dataclass
class FakeReplica:
    service: str
    version: str
    ready: bool = True
    restarts: int = 0

    @property
    def key(self) -> tuple[str, str]:
        return (self.service, self.version)


@dataclass
class FakeRuntime:
    replicas: list[FakeReplica] = field(default_factory=list)


@dataclass
class FakePublisher:
    rejections: int = 0


@dataclass
class FakeGateway:
    publish_seconds: Durations = field(default_factory=Durations)
    publisher: FakePublisher = field(default_factory=FakePublisher)
    restarts: int = 0


@dataclass
class FakePlane:
    """What StateReader reads of the ControlPlane: its store, runtime and gateway."""

    store: Store
    runtime: FakeRuntime
    gateway: FakeGateway
