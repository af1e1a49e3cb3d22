"""Wiring the rollout controller to the control plane: the `Deployments` and `ReadingSource` it drives."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from shiploop.errors import Invalid, ShiploopError
from shiploop.rollout.controller import RolloutController
from shiploop.rollout.envoy_readings import EnvoyReadings
from shiploop.rollout.prometheus_readings import PrometheusReadings
from shiploop.server.controlplane import ControlPlane
from shiploop.server.specs import spec_from_json
from shiploop.spec import MetricsSpec, RolloutPolicy, ServiceSpec
from shiploop.spec.models import default_route
from shiploop.store import DeploymentRow


class ControlPlaneDeployments:
    """The control plane seen through rollout.ports.Deployments."""

    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp

    def service(self, name: str) -> ServiceSpec:
        return self.cp.service(name)

    def deployments(self, service: str) -> Sequence[DeploymentRow]:
        return self.cp.store.deployments(service)

    def deployed_policy(self, service: str, version: str) -> RolloutPolicy:
        row = next(d for d in self.cp.store.deployments(service) if d.version == version)
        return spec_from_json(row.spec).rollout

    def sample_url(self, service: str) -> str | None:
        try:
            spec = self.cp.service(service)
        except ShiploopError:  # a service removed from the project: no hint, not an error
            return None
        routes = [r.model_dump() for r in spec.routes] or [default_route(service)]
        for r in routes:
            if r.get("prefix") and not r.get("host") and not r.get("headers") and not r.get("methods"):
                return f"{self.cp.gateway_url}{r['prefix']}"
            if r.get("path") and not r.get("host") and not r.get("headers") and not r.get("methods"):
                return f"{self.cp.gateway_url}{r['path']}"
        return None

    async def deploy(self, service: str, weight: int, track: str) -> dict[str, Any]:
        return await self.cp.deploy(service, weight=weight, track=track)

    async def set_weights(self, service: str, requested: dict[str, int]) -> dict[str, int]:
        return await self.cp.set_weights(service, requested)

    async def set_header_route(self, service: str, header: str, value: str, ref: str) -> dict[str, str]:
        return await self.cp.set_header_route(service, header, value, ref)

    async def remove_header_route(self, service: str, header: str, value: str | None) -> int:
        return await self.cp.remove_header_route(service, header, value)

    async def promote(self, service: str, reason: str) -> dict[str, Any]:
        return await self.cp.promote(service, reason=reason)

    async def rollback(self, service: str, reason: str) -> dict[str, Any]:
        return await self.cp.rollback(service, reason=reason)


def check_metrics_source(metrics: MetricsSpec, prometheus_started: bool) -> None:
    """Before anything starts: `source: prometheus` needs a url, or the Prometheus `up --prometheus` runs."""
    if metrics.source == "prometheus" and metrics.url is None and not prometheus_started:
        raise Invalid(
            "shiploop.yaml: metrics.source is prometheus without a url, and no Prometheus is started",
            hint="run: shiploop up --prometheus; or set metrics.url in shiploop.yaml",
        )


def rollout_controller(
    cp: ControlPlane, managed_prometheus: Callable[[], str | None] = lambda: None
) -> tuple[RolloutController, EnvoyReadings | PrometheusReadings]:
    """The controller the daemon runs, and its readings source (close it with `aclose` at shutdown).

    `managed_prometheus`: the URL of the Prometheus `up --prometheus` runs (None while there
    is none), read by `metrics: {source: prometheus}` without a `url`.
    """
    clock = cp.ctx.clock  # one clock for records, events and decisions
    metrics = cp.project.metrics
    readings: EnvoyReadings | PrometheusReadings
    if metrics.source == "prometheus":
        url = metrics.url
        readings = PrometheusReadings(
            (lambda: url) if url is not None else managed_prometheus,
            cp.project.name,
            clock=clock,
            scrape_interval_s=metrics.scrape_interval,
        )
    else:
        readings = EnvoyReadings(lambda: cp.gateway.admin, cp.runtime.endpoints, clock=clock)
    return RolloutController(cp.store, ControlPlaneDeployments(cp), readings, clock=clock), readings
