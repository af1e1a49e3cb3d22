"""The in-cluster controller's HTTP API: the daemon's rollout routes, with the same contract models.

So `shiploop rollout` and `rollout status` can point at a cluster (through
`kubectl port-forward`) as they point at the local daemon: the same paths,
bodies (shiploop/contract.py) and error answers (ErrorBody: kind and one line).
Reads are open to whoever reaches the port; writes need `Authorization: Bearer
TOKEN`, the token of the Secret the controller's pod mounts (none set: every
write is refused). A controller that does not hold the Lease answers writes
503 naming the one that does; reads come from the records in the cluster, so
any replica answers them.

Also /healthz for the pod's probes: 200 while its last step reached the API server.
"""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from shiploop.contract import ErrorBody, Event, Health, Rollout, ServiceStatus, Status, VersionStatus
from shiploop.errors import Invalid, NotFound, ShiploopError, error_kind
from shiploop.k8s.controller import ClusterController
from shiploop.k8s.desired import version_service

MAX_HISTORY = 100


def _error(status: int, kind: str, line: str) -> JSONResponse:
    return JSONResponse(status_code=status, content=ErrorBody(kind=kind, error=line).model_dump())


def create_app(ctl: ClusterController, project: str, token: str | None) -> FastAPI:
    errors: dict[int | str, dict[str, Any]] = {c: {"model": ErrorBody} for c in (401, 404, 409, 422, 500, 503)}
    app = FastAPI(title="shiploop-controller", version="0.1.0", responses=errors)
    rollouts = lambda: ctl.rollouts  # noqa: E731 - a new leader term replaces the controller object

    @app.exception_handler(ShiploopError)
    async def user_error(_: Request, exc: ShiploopError) -> JSONResponse:
        return _error(exc.http_status, error_kind(exc), exc.line())

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, "Invalid", "invalid request: " + "; ".join(str(e.get("msg")) for e in exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 401:
            return _error(401, "Unauthorized", str(exc.detail))
        if exc.status_code == 404:
            return _error(404, "NotFound", f"no such API route: {request.method} {request.url.path}")
        return _error(exc.status_code, "Invalid" if exc.status_code < 500 else "Internal", str(exc.detail))

    expected = f"Bearer {token}".encode() if token else None

    def authorized(authorization: str = Header("")) -> None:
        if expected is None:
            raise StarletteHTTPException(401, "this controller has no token: writes are off (see its Secret)")
        if not hmac.compare_digest(authorization.encode("utf-8", "surrogateescape"), expected):
            raise StarletteHTTPException(401, "missing or wrong token")

    write = [Depends(authorized)]

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        body = {"identity": ctl.identity, "leading": ctl.leading, "steps": ctl.steps, "error": ctl.error}
        return JSONResponse(status_code=200 if ctl.error is None else 503, content=body)

    @app.get("/v1/health", response_model=Health)
    async def health() -> Health:
        return Health(ok=ctl.error is None, project=project, gateway="")

    @app.get("/v1/events", response_model=list[Event])
    async def events(
        service: str | None = None,
        limit: int = Query(100, ge=1, le=MAX_HISTORY),
        after: int = Query(0, ge=0, le=2**63 - 1, description="only events with a larger id (for following)"),
    ) -> list[dict[str, Any]]:
        """The rollouts' events kept with their records (the controller records no others)."""
        return [e for e in ctl.store.events(service, limit) if e["id"] > after]

    @app.get("/v1/status", response_model=Status)
    async def status() -> Status:
        """The services as the routing ConfigMap has them (versions, tracks, weights) with their rollouts;
        replicas from each version's Deployment where the controller may read it."""
        routing = ctl.deployments.routing()
        services = []
        for name, versions in sorted(routing.services.items()):
            rows = []
            for v in versions:
                ready, replicas = ctl.replicas(version_service(name, v.version))
                rows.append(VersionStatus(id=v.version, track=v.track, weight=v.weight, ready=ready,
                                          replicas=replicas, state="running" if ready else "starting"))  # fmt: skip
            rollout = rollouts().latest_view(name)
            services.append(ServiceStatus(name=name, versions=rows,
                                          rollout=Rollout.model_validate(rollout) if rollout else None))  # fmt: skip
        return Status(project=project, gateway="", generation=0, services=services)

    @app.post("/v1/services/{service}/rollout", dependencies=write, response_model=Rollout)
    async def start_rollout(service: str) -> dict[str, Any]:
        ctl.require_leader()
        return await rollouts().start(service)

    @app.get("/v1/services/{service}/rollout", response_model=Rollout)
    async def rollout_status(service: str) -> dict[str, Any]:
        r = rollouts().latest_view(service)
        if r is None:
            raise NotFound(f"{service} has had no rollout in the cluster yet",
                           hint="shiploop deploy --target kubernetes")  # fmt: skip
        return r

    @app.get("/v1/services/{service}/rollouts", response_model=list[Rollout])
    async def rollout_history(service: str, limit: int = Query(20, ge=1, le=MAX_HISTORY)) -> list[dict[str, Any]]:
        return rollouts().history(service, limit)

    @app.post("/v1/services/{service}/rollout/{action}", dependencies=write, response_model=Rollout)
    async def rollout_action(service: str, action: str) -> dict[str, Any]:
        r = rollouts()
        actions = {"pause": r.pause, "resume": r.resume, "abort": r.abort, "promote": r.promote_now}
        if action not in actions:
            raise Invalid(f"unknown rollout action '{action}'", hint=f"one of: {', '.join(actions)}")
        ctl.require_leader()
        return await actions[action](service)

    return app
