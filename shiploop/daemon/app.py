"""The daemon's HTTP API (FastAPI). Reads are open on 127.0.0.1; changes need the token."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from shiploop.daemon.hand_guard import guard_hand_change
from shiploop.errors import NotFound, ShiploopError, Unavailable
from shiploop.naming import Track
from shiploop.rollout.controller import RolloutController
from shiploop.rollout.plan import policy_plan
from shiploop.server.controlplane import ControlPlane
from shiploop.server.observe import Observer


class DeployRequest(BaseModel):
    weight: int = Field(0, ge=0, le=100)
    track: Literal["canary", "shadow"] = "canary"


class WeightsRequest(BaseModel):
    weights: dict[str, int]


class HeaderRouteRequest(BaseModel):
    header: str
    value: str
    version: str


def create_app(
    cp: ControlPlane,
    rollouts: RolloutController,
    observer: Observer,
    token: str,
    on_shutdown: Callable[[], Awaitable[None]],
) -> FastAPI:
    app = FastAPI(title="shiploop", version="0.1.0")

    @app.exception_handler(ShiploopError)
    async def user_error(_: Request, exc: ShiploopError) -> JSONResponse:
        return JSONResponse(status_code=400, content={"error": exc.line()})

    def authorized(authorization: str = Header("")) -> None:
        if not hmac.compare_digest(authorization, f"Bearer {token}"):
            raise HTTPException(401, "missing or wrong token: the CLI reads it from .shiploop/token")

    write = [Depends(authorized)]

    @app.get("/v1/health")
    async def health() -> dict[str, Any]:
        return {"ok": True, "project": cp.project.name, "gateway": cp.gateway_url}

    @app.get("/v1/status")
    async def status() -> dict[str, Any]:
        data = cp.status()
        for svc in data["services"]:
            svc["rollout"] = rollouts.latest_view(svc["name"])
            for v in svc["versions"]:
                v["traffic"] = observer.summary(svc["name"], v["id"])
        return data

    @app.get("/v1/services/{service}/versions")
    async def versions(service: str) -> list[dict[str, Any]]:
        return cp.versions(service)

    @app.get("/v1/services/{service}/logs")
    async def logs(service: str, version: str | None = None) -> dict[str, Any]:
        return {"files": cp.log_files(service, version)}

    @app.get("/v1/events")
    async def events(service: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        return cp.store.events(service, limit)

    @app.post("/v1/services/{service}/deploy", dependencies=write)
    async def deploy(service: str, body: DeployRequest, force: bool = False) -> dict[str, Any]:
        await guard_hand_change(rollouts, cp.store, service, "deploy", force)
        return await cp.deploy(service, body.weight, body.track)

    @app.post("/v1/services/{service}/weights", dependencies=write)
    async def weights(service: str, body: WeightsRequest, force: bool = False) -> dict[str, int]:
        await guard_hand_change(rollouts, cp.store, service, "route --weight", force)
        return await cp.set_weights(service, body.weights)

    @app.post("/v1/services/{service}/header-routes", dependencies=write)
    async def add_header_route(service: str, body: HeaderRouteRequest, force: bool = False) -> dict[str, str]:
        await guard_hand_change(rollouts, cp.store, service, "route --header", force)
        return await cp.set_header_route(service, body.header, body.value, body.version)

    @app.delete("/v1/services/{service}/header-routes/{header}", dependencies=write)
    async def remove_header_route(
        service: str, header: str, value: str | None = None, force: bool = False
    ) -> dict[str, int]:
        await guard_hand_change(rollouts, cp.store, service, "route --remove-header", force)
        return {"removed": await cp.remove_header_route(service, header, value)}

    @app.post("/v1/services/{service}/promote", dependencies=write)
    async def promote(service: str, force: bool = False) -> dict[str, Any]:
        await guard_hand_change(rollouts, cp.store, service, "promote", force)
        return await cp.promote(service)

    @app.post("/v1/services/{service}/rollback", dependencies=write)
    async def rollback(service: str, force: bool = False) -> dict[str, Any]:
        await guard_hand_change(rollouts, cp.store, service, "rollback", force)
        return await cp.rollback(service)

    @app.post("/v1/services/{service}/rollout", dependencies=write)
    async def start_rollout(service: str) -> dict[str, Any]:
        return await rollouts.start(service)

    @app.get("/v1/services/{service}/rollout")
    async def rollout_status(service: str) -> dict[str, Any]:
        cp.service(service)
        r = rollouts.latest_view(service)
        if r is None:
            raise NotFound(f"{service} has had no rollout yet", hint=f"start one: shiploop rollout {service}")
        return r

    @app.get("/v1/services/{service}/rollout/plan")
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

    @app.get("/v1/services/{service}/rollouts")
    async def rollout_history(service: str, limit: int = 20) -> list[dict[str, Any]]:
        cp.service(service)
        return rollouts.history(service, limit)

    @app.post("/v1/services/{service}/rollout/{action}", dependencies=write)
    async def rollout_action(service: str, action: str) -> dict[str, Any]:
        actions = {
            "pause": rollouts.pause,
            "resume": rollouts.resume,
            "abort": rollouts.abort,
            "promote": rollouts.promote_now,
        }
        if action not in actions:
            raise ShiploopError(f"unknown rollout action '{action}'", hint=f"one of: {', '.join(actions)}")
        return await actions[action](service)

    @app.post("/v1/down", dependencies=write)
    async def down() -> dict[str, Any]:
        await on_shutdown()
        return {"ok": True}

    return app
