"""The daemon's side of a managed Prometheus: start or adopt it, keep it running, record it, stop it."""

from __future__ import annotations

import logging

from shiploop.procs import is_running, terminate_group
from shiploop.server.controlplane import ControlPlane
from shiploop.telemetry.prometheus import ManagedPrometheus, PrometheusProcess, prometheus_binary

STORE_KEY = "prometheus"
log = logging.getLogger("shiploop.prometheus")


class PrometheusWiring:
    def __init__(self, cp: ControlPlane, managed: ManagedPrometheus) -> None:
        self.cp = cp
        self.managed = managed

    @classmethod
    def check(cls, wanted: bool) -> str | None:
        """The binary to run when wanted (raises with the install hint when missing), before anything starts."""
        return prometheus_binary() if wanted else None

    @classmethod
    def start(cls, cp: ControlPlane, binary: str | None) -> PrometheusWiring | None:
        recorded = cp.store.get(STORE_KEY)
        if binary is None:
            if recorded:  # left by a daemon started with --prometheus that crashed; not wanted now
                old = PrometheusProcess.from_json(recorded)
                if is_running(old.pid, old.start_time):
                    terminate_group(old.pid, 10.0)
                cp.store.delete(STORE_KEY)
            return None
        managed = ManagedPrometheus(cp.state_dir, cp.project.name, binary, cp.ctx.paths.logs / "prometheus.log")
        if not (recorded and managed.adopt(PrometheusProcess.from_json(recorded))):
            managed.start(PrometheusProcess.from_json(recorded).port if recorded else None)
        wiring = cls(cp, managed)
        wiring._record()
        return wiring

    @property
    def url(self) -> str | None:
        return self.managed.url

    async def tick(self) -> None:
        old = self.managed.process
        started = self.managed.tick()
        if started is None or old is None:
            return
        self._record()
        self.cp.event(
            None,
            "prometheus-restarted",
            f"prometheus pid {old.pid} was gone; started pid {started.pid} on {started.url}",
            {"old_pid": old.pid, "pid": started.pid, "restarts": self.managed.restarts},
        )
        log.warning("prometheus pid %s was gone; started pid %s", old.pid, started.pid)

    def _record(self) -> None:
        if self.managed.process is not None:
            self.cp.store.put(STORE_KEY, self.managed.process.to_json())

    def stop(self) -> None:
        self.managed.stop()
        self.cp.store.delete(STORE_KEY)
