"""Read-only views of the control plane for the API: status, versions, log files."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shiploop.server.context import PlaneContext
from shiploop.store import ExperimentRow, InterceptRow


class Views:
    def __init__(self, ctx: PlaneContext, intercept_view: Callable[[InterceptRow], dict[str, Any]]) -> None:
        self.ctx = ctx
        self.intercept_view = intercept_view

    def status(self) -> dict[str, Any]:
        ctx = self.ctx
        services = []
        for name, rows, spec in ctx.deployed_services():
            versions = []
            for d in rows:
                ready, total = ctx.runtime.counts(name, d.version)
                versions.append(
                    {
                        "id": d.version,
                        "track": d.track,
                        "weight": d.weight,
                        "ready": ready,
                        "replicas": total,
                        "state": d.state,
                        # restarts, last_exit_code, last_log_line: a crash loop shows here
                        **ctx.runtime.health(name, d.version),
                    }
                )
            header_routes = [{"header": h, "value": v, "version": ver} for h, v, ver in ctx.store.header_routes(name)]
            routes = [r.describe() for r in spec.routes]
            services.append(
                {
                    "name": name,
                    "versions": versions,
                    "header_routes": header_routes,
                    "intercepts": [self.intercept_view(i) for i in ctx.store.intercepts(name)],
                    "routes": routes,
                    "experiment": _experiment_brief(ctx.store.running_experiment(name)),
                }
            )
        return {
            "project": ctx.project.name,
            "gateway": ctx.gateway_url,
            "services": services,
            "generation": ctx.gateway.publisher.generation,
            "envoy": envoy_status(ctx),
            "degraded": degraded(ctx),
        }

    def versions(self, service: str) -> list[dict[str, Any]]:
        ctx = self.ctx
        ctx.service(service)
        deployed = {d.version: d for d in ctx.store.deployments(service)}
        out = []
        for v in ctx.store.versions(service):
            d = deployed.get(v["id"])
            out.append(
                {
                    "id": v["id"],
                    "created_at": v["created_at"],
                    "track": d.track if d else None,
                    "weight": d.weight if d else None,
                }
            )
        return out

    def log_files(self, service: str, ref: str | None) -> list[str]:
        ctx = self.ctx
        ctx.service(service)
        version = ctx.resolve(service, ref).version if ref else None
        return [
            str(r.log_path)
            for r in ctx.runtime.replicas
            if r.service == service and (version is None or r.version == version)
        ]


def envoy_status(ctx: PlaneContext) -> dict[str, Any]:
    gw = ctx.gateway
    last = gw.last_restart
    return {
        "pid": gw.process.pid if gw.process is not None else None,
        "serving": gw.alive(),
        "admin": str(gw.admin_socket),
        "restarts": gw.restarts,
        "last_restart": None if last is None else {"at": last.at, "seconds": round(last.seconds, 3)},
    }


def degraded(ctx: PlaneContext) -> list[str]:
    """What does not work as it should right now, one line each (empty when all is well)."""
    out = []
    if ctx.store.write_error is not None:
        pending = ctx.store.pending_writes
        out.append(
            f"degraded: state store not writable ({ctx.store.write_error}); serving goes on, "
            f"{pending} record{'s' if pending != 1 else ''} kept in memory until it is"
        )
    if ctx.gateway.process is not None and not ctx.gateway.alive():
        out.append("degraded: envoy is down; it is being restarted")
    return out


def _experiment_brief(row: ExperimentRow | None) -> dict[str, Any] | None:
    """The experiment running on a service, as `status` shows it (details: `experiment status`)."""
    if row is None:
        return None
    return {"id": row.id, "state": row.state, "hypothesis": row.hypothesis, "treatment": row.treatment}
