"""The experiment endpoints: start, status, stop, history, report, plan (`shiploop experiment ...`)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Query

from shiploop.analysis.experiment import plan_experiment
from shiploop.contract import Experiment, ExperimentPlan, ExperimentStop, ExperimentSummary
from shiploop.errors import Invalid
from shiploop.experiments import plan_inputs
from shiploop.experiments.controller import ExperimentController
from shiploop.server.controlplane import ControlPlane
from shiploop.server.observe import Observer


def _num(x: float) -> float | None:
    return None if x != x or x in (float("inf"), float("-inf")) else x


def mount_experiments(app: FastAPI, cp: ControlPlane, experiments: ExperimentController, observer: Observer) -> None:
    write = app.state.write

    @app.post("/v1/services/{service}/experiment", dependencies=write, response_model=Experiment)
    async def start_experiment(service: str) -> dict[str, Any]:
        async with app.state.owners.of(service):  # not beside a rollout's start (daemon/hand_guard.py)
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
        sources = {}
        if units_per_second is None:
            # Live: every deployed version of the service (during an experiment, stable serves only part).
            summaries = [observer.summary(service, d.version) for d in cp.store.deployments(service)]
            live = sum(t["rps"] for t in summaries if t and t["rps"])
            estimate = plan_inputs.units_per_second(cp.store, service, live or None, cp.ctx.clock())
            if estimate is not None:
                units_per_second, sources["units_per_second"] = estimate.value, estimate.source
        event = exp.metrics.primary.event
        if baseline is None and event is not None:
            seen = plan_inputs.baseline_seen(cp.store, service, event)
            if seen is not None:
                baseline, sources["baseline"] = seen.value, seen.source
        unknown = []
        if baseline is None:
            unknown.append(
                f"no baseline rate of {exp.metrics.primary.label} (the gateway sees {event} only during an "
                "experiment, and none has measured it)"
            )
        if not units_per_second:
            unknown.append("no traffic now to count units by")
        if unknown:
            # Example values, so the hint runs as printed; the user puts in their own.
            options = (" --baseline 0.05" if baseline is None else "") + (
                " --units-per-second 10" if not units_per_second else ""
            )
            raise Invalid(
                f"cannot plan {service}: {' and '.join(unknown)}",
                hint=f"say what you expect, e.g. shiploop experiment plan {service}{options}",
            )
        assert baseline is not None and units_per_second is not None
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
