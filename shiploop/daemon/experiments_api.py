"""The experiment endpoints: start, status, stop, history, report, plan (`shiploop experiment ...`)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Query

from shiploop.analysis.experiment import plan_experiment
from shiploop.contract import Experiment, ExperimentPlan, ExperimentStop, ExperimentSummary
from shiploop.errors import Invalid, Unavailable
from shiploop.experiments.controller import ExperimentController
from shiploop.naming import Track
from shiploop.server.controlplane import ControlPlane
from shiploop.server.observe import Observer


def _num(x: float) -> float | None:
    return None if x != x or x in (float("inf"), float("-inf")) else x


def mount_experiments(app: FastAPI, cp: ControlPlane, experiments: ExperimentController, observer: Observer) -> None:
    write = app.state.write

    @app.post("/v1/services/{service}/experiment", dependencies=write, response_model=Experiment)
    async def start_experiment(service: str) -> dict[str, Any]:
        return await experiments.start(service)

    @app.get("/v1/services/{service}/experiment", response_model=Experiment)
    async def experiment_status(service: str) -> dict[str, Any]:
        return experiments.status(service)

    @app.get("/v1/services/{service}/experiment/report", response_model=Experiment)
    async def experiment_report(service: str) -> dict[str, Any]:
        return experiments.report(service)

    @app.post("/v1/services/{service}/experiment/stop", dependencies=write, response_model=Experiment)
    async def stop_experiment(service: str, body: ExperimentStop) -> dict[str, Any]:
        return await experiments.stop(service, ship=body.outcome == "ship")

    @app.get("/v1/services/{service}/experiments", response_model=list[ExperimentSummary])
    async def experiment_history(service: str, limit: int = Query(20, ge=1, le=1000)) -> list[dict[str, Any]]:
        return experiments.history(service, limit)

    @app.get("/v1/services/{service}/experiment/plan", response_model=ExperimentPlan)
    async def experiment_plan(
        service: str, baseline: float | None = None, units_per_second: float | None = None
    ) -> dict[str, Any]:
        """How long until the MDE shows: traffic and baseline measured, or as given."""
        exp = cp.service(service).experiment
        if exp is None:
            raise Invalid(
                f"{service}/service.yaml has no experiment block",
                hint="add experiment: (docs/config-reference.md), then: shiploop experiment plan " + service,
            )
        last = next(iter(cp.store.experiments(service, limit=1)), None)
        sources = {}
        if units_per_second is None and last is not None:
            units = sum(cp.store.arm_units(last.id).values())
            seconds = (last.ended_at or cp.ctx.clock()) - last.started_at
            if units and seconds > 0:
                units_per_second, sources["units_per_second"] = units / seconds, f"experiment #{last.id}"
        if units_per_second is None:
            stable = cp.ctx.find_track(service, Track.STABLE)
            traffic = observer.summary(service, stable.version) if stable else None
            if traffic and traffic["rps"]:
                # Every request a new unit: the most units there can be, so the shortest plan.
                units_per_second, sources["units_per_second"] = traffic["rps"], "requests per second now"
        if not units_per_second:
            raise Unavailable(
                f"no traffic measured for {service} yet (the plan needs units per second)",
                hint=f"shiploop experiment plan {service} --units-per-second 10",
            )
        if baseline is None and last is not None and exp.metrics.primary.event is not None:
            sums = cp.store.arm_sums(last.id, exp.metrics.primary.event, conversion=True).get("control")
            if sums is not None and sums.units and 0 < sums.x < sums.units:
                baseline, sources["baseline"] = sums.x / sums.units, f"control of experiment #{last.id}"
        if baseline is None:
            raise Unavailable(
                f"no baseline rate of {exp.metrics.primary.label} known for {service}",
                hint=f"shiploop experiment plan {service} --baseline 0.1",
            )
        try:
            plan = plan_experiment(
                baseline, exp.minimum_detectable_effect, units_per_second, exp.allocation, alpha=exp.alpha
            )
        except ValueError as e:
            raise Invalid(str(e), hint=f"shiploop experiment plan {service} --baseline 0.1") from None
        return {
            "service": service,
            "hypothesis": exp.hypothesis,
            "baseline": plan.baseline,
            "minimum_detectable_effect": plan.mde,
            "units_per_second": plan.units_per_second,
            "allocation": plan.allocation_percent,
            "fixed_units": plan.fixed_units,
            "fixed_seconds": _num(plan.fixed_seconds),
            "sequential_units": plan.sequential_units,
            "sequential_seconds": _num(plan.sequential_seconds),
            "max_duration_s": exp.max_duration,
            "sources": sources,
        }
