"""The daemon's HTTP API (FastAPI). Reads are open on 127.0.0.1; changes need the token.

Every route declares its response model from shiploop.contract, so the OpenAPI
document the daemon serves (/openapi.json) is the API's reference. Errors are
mapped here, once: a ShiploopError answers with its class's `http_status` and
an ErrorBody naming its kind; a request FastAPI cannot validate is `Invalid`
(422); anything else is a bug, answered 500 `Internal` with one line, its
traceback left in the daemon log.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from shiploop.contract import (
    Deployed,
    DeployRequest,
    ErrorBody,
    Event,
    HeaderRemoved,
    HeaderRoute,
    HeaderRouteRequest,
    Health,
    Intercept,
    InterceptRequest,
    InterceptTarget,
    LogFiles,
    Ok,
    Promoted,
    RolledBack,
    Rollout,
    RolloutPlan,
    Status,
    VersionInfo,
    Weights,
    WeightsRequest,
)
from shiploop.daemon.hand_guard import TrafficLocks, guard_hand_change
from shiploop.daemon.remote import caller
from shiploop.errors import Conflict, Invalid, NotFound, ShiploopError, Unavailable, error_kind
from shiploop.naming import Track
from shiploop.paths import ProjectPaths
from shiploop.rollout.controller import RolloutController
from shiploop.rollout.plan import policy_plan
from shiploop.server.controlplane import ControlPlane
from shiploop.server.observe import Observer

MAX_EVENTS = 10_000
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (401, 404, 409, 422, 500, 502, 503, 504)
}
T = TypeVar("T")  # what a change by hand answers (by_hand in create_app)


def error_response(status: int, kind: str, line: str) -> JSONResponse:
    return JSONResponse(status_code=status, content=ErrorBody(kind=kind, error=line).model_dump())


def _one_line(exc: RequestValidationError) -> str:
    parts = []
    for e in exc.errors():
        where = ".".join(str(p) for p in e.get("loc", ()) if p not in ("body",))
        parts.append(f"{where}: {e.get('msg', 'invalid')}" if where else str(e.get("msg", "invalid")))
    return "invalid request: " + "; ".join(parts)


def create_app(
    cp: ControlPlane,
    rollouts: RolloutController,
    observer: Observer,
    token: str,
    on_shutdown: Callable[[], Awaitable[None]],
) -> FastAPI:
    app = FastAPI(title="shiploop", version="0.1.0", responses=ERRORS)
    paths = ProjectPaths(cp.root)

    @app.exception_handler(ShiploopError)
    async def user_error(_: Request, exc: ShiploopError) -> JSONResponse:
        return error_response(exc.http_status, error_kind(exc), exc.line())

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "Invalid", _one_line(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 401:
            return error_response(401, "Unauthorized", str(exc.detail))
        if exc.status_code == 404:
            return error_response(404, "NotFound", f"no such API route: {request.method} {request.url.path}")
        if exc.status_code == 405:
            return error_response(405, "Invalid", f"{request.method} is not allowed on {request.url.path}")
        kind = "Invalid" if exc.status_code < 500 else "Internal"
        return error_response(exc.status_code, kind, str(exc.detail))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        # A bug. Starlette re-raises it after this answer, so uvicorn writes the traceback
        # to the daemon log (our stderr); the user gets one line naming that log.
        line = f"internal error in the daemon ({type(exc).__name__}); details in {paths.daemon_log}"
        return error_response(500, "Internal", line)

    expected = f"Bearer {token}".encode()

    def authorized(request: Request, authorization: str = Header("")) -> None:
        if caller(request) is not None:  # a user's token, checked at the TLS API's door (daemon/remote.py)
            return
        # Compare bytes: compare_digest refuses non-ASCII str, and a header may carry any byte.
        given = authorization.encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(given, expected):
            raise StarletteHTTPException(401, "missing or wrong token: the CLI reads it from .shiploop/token")

    write = [Depends(authorized)]
    app.state.write = write  # for routes mounted by other modules (daemon/experiments_api.py)
    owners = app.state.owners = TrafficLocks()  # starts and hand changes, one at a time per service

    async def by_hand(service: str, action: str, force: bool, change: Callable[[], Awaitable[T]]) -> T:
        """A change by hand: refused while a rollout or an experiment owns the service, and never
        made while one of them is starting (daemon/hand_guard.py)."""
        async with owners.of(service):
            await guard_hand_change(rollouts, cp.store, service, action, force)
            return await change()

    app.state.tunnels = None  # the daemon sets it under --listen (server/tunnel.py)
    # The daemon sets it once it listens: {"prometheus": URL or None} for status.
    app.state.status_links = dict

    @app.get("/v1/health", response_model=Health)
    async def health() -> Health:
        return Health(ok=True, project=cp.project.name, gateway=cp.gateway_url)

    @app.get("/v1/status", response_model=Status)
    async def status(request: Request) -> Status:
        data = cp.status() | app.state.status_links()
        for svc in data["services"]:
            svc["rollout"] = rollouts.latest_view(svc["name"])
            for v in svc["versions"]:
                v["traffic"] = observer.summary(svc["name"], v["id"])
        admin = cp.gateway.admin
        data.setdefault("envoy_admin", admin.address if admin is not None else None)
        data.setdefault("api", str(request.base_url).rstrip("/"))
        data.setdefault("dashboard", f"{data['api']}/")  # the web dashboard, served at / on the API
        data.setdefault("state_dir", str(paths.state_dir))
        data.setdefault("logs_dir", str(paths.logs))
        return Status.model_validate(data)

    @app.get("/v1/services/{service}/versions", response_model=list[VersionInfo])
    async def versions(service: str) -> list[dict[str, Any]]:
        return cp.versions(service)

    @app.get("/v1/services/{service}/logs", response_model=LogFiles)
    async def logs(service: str, version: str | None = None) -> LogFiles:
        return LogFiles(files=cp.log_files(service, version))

    @app.get("/v1/events", response_model=list[Event])
    async def events(
        service: str | None = None,
        limit: int = Query(100, ge=1, le=MAX_EVENTS),
        after: int = Query(0, ge=0, le=2**63 - 1, description="only events with a larger id (for following)"),
    ) -> list[dict[str, Any]]:
        return [e for e in cp.store.events(service, limit) if e["id"] > after]

    @app.post("/v1/services/{service}/deploy", dependencies=write, response_model=Deployed)
    async def deploy(service: str, body: DeployRequest, force: bool = False) -> dict[str, Any]:
        return await by_hand(service, "deploy", force, lambda: cp.deploy(service, body.weight, body.track))

    @app.post("/v1/services/{service}/weights", dependencies=write, response_model=Weights)
    async def weights(service: str, body: WeightsRequest, force: bool = False) -> Weights:
        applied = await by_hand(service, "route --weight", force, lambda: cp.set_weights(service, body.weights))
        return Weights(weights=applied)

    @app.post("/v1/services/{service}/header-routes", dependencies=write, response_model=HeaderRoute)
    async def add_header_route(service: str, body: HeaderRouteRequest, force: bool = False) -> dict[str, str]:
        route = body.header, body.value, body.version
        return await by_hand(service, "route --header", force, lambda: cp.set_header_route(service, *route))

    @app.delete("/v1/services/{service}/header-routes/{header}", dependencies=write, response_model=HeaderRemoved)
    async def remove_header_route(
        service: str, header: str, value: str | None = None, force: bool = False
    ) -> HeaderRemoved:
        removed = await by_hand(
            service, "route --remove-header", force, lambda: cp.remove_header_route(service, header, value)
        )
        return HeaderRemoved(removed=removed)

    # -- personal routes held by leases (shiploop intercept, shiploop dev) ------------------------

    @app.get("/v1/intercepts", response_model=list[Intercept])
    async def list_intercepts(service: str | None = None) -> list[dict[str, Any]]:
        return [cp.intercepts.view(i) for i in cp.intercepts.rows(service)]

    @app.post("/v1/services/{service}/intercepts", dependencies=write, response_model=Intercept)
    async def claim_intercept(service: str, body: InterceptRequest, request: Request) -> dict[str, Any]:
        if body.all:
            # Every request to the developer would starve a rollout of evidence: not while one runs.
            await guard_hand_change(rollouts, cp.store, service, "intercept --all", False)
        header, value = ("", "") if body.all else (body.header, body.value)
        if not body.all and not header:
            raise Invalid("an intercept needs a header to match, or all", hint="give --header NAME=VALUE or --all")
        user = caller(request)
        owner = user or body.owner  # through the TLS API, the token's name

        async def claim(host: str, port: int) -> Any:
            return await cp.intercepts.claim(
                service, header, value, host, port, owner, body.pid, body.kind, body.takeover
            )

        tunnels = app.state.tunnels
        if body.tunnel is not None:
            if tunnels is None:
                raise Invalid("this daemon serves no tunnel", hint="start it with: shiploop up --listen ADDR")
            return cp.intercepts.view(await tunnels.claim(body.tunnel, user, claim))
        if user is not None:
            raise Invalid(
                "a remote CLI's intercept goes through its tunnel", hint="upgrade the CLI: it opens the tunnel itself"
            )
        return cp.intercepts.view(await claim(body.host, body.port))

    def own(request: Request, intercept_id: str) -> None:
        """A user's token acts on that user's intercepts only."""
        user = caller(request)
        if user is not None and not any(i.id == intercept_id and i.owner == user for i in cp.intercepts.rows()):
            raise NotFound(f"intercept {intercept_id} is not yours", hint="see who holds what: shiploop intercepts")

    @app.post("/v1/intercepts/{intercept_id}/renew", dependencies=write, response_model=Intercept)
    async def renew_intercept(intercept_id: str, request: Request) -> dict[str, Any]:
        own(request, intercept_id)
        return cp.intercepts.view(cp.intercepts.renew(intercept_id))

    @app.put("/v1/intercepts/{intercept_id}/target", dependencies=write, response_model=Intercept)
    async def retarget_intercept(intercept_id: str, body: InterceptTarget, request: Request) -> dict[str, Any]:
        own(request, intercept_id)
        if caller(request) is not None:
            raise Invalid("a remote intercept's target moves in its tunnel", hint="the CLI does it itself")
        return cp.intercepts.view(await cp.intercepts.retarget(intercept_id, body.host, body.port))

    @app.delete("/v1/intercepts/{intercept_id}", dependencies=write, response_model=Intercept)
    async def release_intercept(intercept_id: str, request: Request) -> dict[str, Any]:
        own(request, intercept_id)
        return cp.intercepts.view(await cp.intercepts.release(intercept_id))

    @app.post("/v1/services/{service}/promote", dependencies=write, response_model=Promoted)
    async def promote(service: str, force: bool = False) -> dict[str, Any]:
        return await by_hand(service, "promote", force, lambda: cp.promote(service))

    @app.post("/v1/services/{service}/rollback", dependencies=write, response_model=RolledBack)
    async def rollback(service: str, force: bool = False) -> dict[str, Any]:
        return await by_hand(service, "rollback", force, lambda: cp.rollback(service))

    @app.post("/v1/services/{service}/rollout", dependencies=write, response_model=Rollout)
    async def start_rollout(service: str) -> dict[str, Any]:
        async with owners.of(service):
            experiment = cp.store.running_experiment(service)
            if experiment is not None:
                raise Conflict(
                    f"{service} runs experiment #{experiment.id}: a rollout would replace its candidate",
                    hint=f"end it first: shiploop experiment stop {service} --discard",
                )
            return await rollouts.start(service)

    @app.get("/v1/services/{service}/rollout", response_model=Rollout)
    async def rollout_status(service: str) -> dict[str, Any]:
        cp.service(service)
        r = rollouts.latest_view(service)
        if r is None:
            raise NotFound(f"{service} has had no rollout yet", hint=f"start one: shiploop rollout {service}")
        return r

    @app.get("/v1/services/{service}/rollout/plan", response_model=RolloutPlan)
    async def rollout_plan(service: str) -> dict[str, Any]:
        """The policy of the service's current code at the stable version's measured traffic."""
        policy = cp.service(service).rollout
        stable = next((d.version for d in cp.store.deployments(service) if d.track == Track.STABLE), None)
        traffic = observer.summary(service, stable) if stable else None
        if not traffic or not traffic["rps"]:
            raise Unavailable(
                f"no traffic measured for {service} yet (the plan needs its request rate)",
                hint="send traffic, then check it arrives: shiploop status",
            )
        return policy_plan(policy, traffic["rps"], traffic["error_rate"]) | {"service": service}

    @app.get("/v1/services/{service}/rollouts", response_model=list[Rollout])
    async def rollout_history(service: str, limit: int = Query(20, ge=1, le=MAX_EVENTS)) -> list[dict[str, Any]]:
        cp.service(service)
        return rollouts.history(service, limit)

    @app.post("/v1/services/{service}/rollout/{action}", dependencies=write, response_model=Rollout)
    async def rollout_action(service: str, action: str) -> dict[str, Any]:
        actions = {
            "pause": rollouts.pause,
            "resume": rollouts.resume,
            "abort": rollouts.abort,
            "promote": rollouts.promote_now,
        }
        if action not in actions:
            raise Invalid(f"unknown rollout action '{action}'", hint=f"one of: {', '.join(actions)}")
        return await actions[action](service)

    @app.post("/v1/down", dependencies=write, response_model=Ok)
    async def down() -> Ok:
        await on_shutdown()
        return Ok()

    return app
