"""The API contract: every route declares its models in the OpenAPI document, and errors map once.

The app runs in-process (FastAPI's TestClient) on fakes of the control plane:
no daemon, no Envoy. What is checked is the HTTP layer: models, status codes,
error bodies.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from shiploop import contract
from shiploop.cli.client import DaemonClient, DaemonFailed
from shiploop.daemon.app import create_app
from shiploop.errors import ERROR_KINDS, GatewayRejected, NotFound, ShiploopError
from shiploop.paths import ProjectPaths

TOKEN = "t0ken"


class FakeStore:
    def running_experiment(self, service: str) -> None:
        return None

    def events(self, service: str | None, limit: int) -> list[dict[str, Any]]:
        rows = [
            {"id": i, "ts": 1000.0 + i, "service": "web", "kind": "deployed", "message": f"m{i}", "evidence": None}
            for i in range(1, 4)
        ]
        return rows[-limit:]


class FakeControlPlane:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.project = SimpleNamespace(name="p")
        self.gateway_url = "http://127.0.0.1:8080"
        self.gateway = SimpleNamespace(admin=SimpleNamespace(address="unix:/tmp/envoy-admin.sock"))
        self.store = FakeStore()

    def service(self, name: str) -> None:
        if name != "web":
            raise NotFound(f"unknown service '{name}'", hint="see: shiploop status")

    def status(self) -> dict[str, Any]:
        version = {
            "id": "3f9c2a1b7d04",
            "track": "stable",
            "weight": 100,
            "ready": 2,
            "replicas": 2,
            "state": "running",
        }
        return {
            "project": "p",
            "gateway": self.gateway_url,
            "generation": 3,
            "services": [{"name": "web", "versions": [version], "header_routes": [], "routes": ["prefix /web/"]}],
        }

    def versions(self, service: str) -> list[dict[str, Any]]:
        self.service(service)
        return [{"id": "3f9c2a1b7d04", "created_at": 1.0, "track": "stable", "weight": 100}]

    async def promote(self, service: str) -> dict[str, Any]:
        raise GatewayRejected("Envoy refused the routes: bad regex")

    async def rollback(self, service: str) -> dict[str, Any]:
        raise RuntimeError("a bug")

    async def set_weights(self, service: str, weights: dict[str, int]) -> dict[str, int]:
        self.service(service)
        return {"3f9c2a1b7d04": 100}


@pytest.fixture
def api(tmp_path: Path) -> TestClient:
    async def shutdown() -> None:
        pass

    async def act(service: str) -> dict[str, Any]:
        raise AssertionError("not called")

    rollouts = SimpleNamespace(
        latest=lambda service: None,
        latest_view=lambda service: None,
        history=lambda service, limit: [],
        pause=act,
        resume=act,
        abort=act,
        promote_now=act,
    )
    observer = SimpleNamespace(summary=lambda service, version: None)
    app = create_app(FakeControlPlane(tmp_path), rollouts, observer, TOKEN, shutdown)  # type: ignore[arg-type]
    return TestClient(app, raise_server_exceptions=False)


def test_openapi_lists_every_route_with_its_models(api: TestClient):
    doc = api.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]
    routes = [r for r in api.app.routes if isinstance(r, APIRoute)]  # type: ignore[attr-defined]
    assert len(routes) >= 16
    for route in routes:
        for method in route.methods:
            op = doc["paths"][route.path][method.lower()]
            assert route.response_model is not None, f"{method} {route.path} has no response model"
            ok = op["responses"]["200"]["content"]["application/json"]["schema"]
            ref = ok.get("$ref") or ok.get("items", {}).get("$ref")
            assert ref, f"{method} {route.path}: 200 has no model: {ok}"
            name = ref.rsplit("/", 1)[-1]
            assert name in schemas and hasattr(contract, name), f"{method} {route.path}: {name} is not in the contract"
            for code in ("404", "422", "500"):
                err = op["responses"][code]["content"]["application/json"]["schema"]["$ref"]
                assert err.endswith("/ErrorBody"), f"{method} {route.path} {code}"


def test_reads_answer_the_contract(api: TestClient):
    status = contract.Status.model_validate(api.get("/v1/status").json())
    assert status.services[0].versions[0].id == "3f9c2a1b7d04"
    assert status.api and status.api.startswith("http://")
    assert status.envoy_admin == "unix:/tmp/envoy-admin.sock"
    assert status.logs_dir and status.logs_dir.endswith("logs")
    events = [contract.Event.model_validate(e) for e in api.get("/v1/events", params={"after": 1}).json()]
    assert [e.id for e in events] == [2, 3]


@pytest.mark.parametrize(
    "query", ["limit=999999999999999999999", "limit=-1", "limit=abc", "after=99999999999999999999999"]
)
def test_out_of_range_queries_are_a_clean_422(api: TestClient, query: str):
    r = api.get(f"/v1/events?{query}")
    assert r.status_code == 422
    body = contract.ErrorBody.model_validate(r.json())
    assert body.kind == "Invalid" and "\n" not in body.error


@pytest.mark.parametrize("authorization", ["Bearer tökén".encode(), b"\xff\xfe", b"", b"Bearer wrong"])
def test_a_bad_or_non_ascii_token_is_a_clean_401(api: TestClient, authorization: bytes):
    headers = [(b"authorization", authorization)] if authorization else []
    r = api.post("/v1/services/web/weights", json={"weights": {"a": 1}}, headers=headers)  # type: ignore[arg-type]
    assert r.status_code == 401
    assert contract.ErrorBody.model_validate(r.json()).kind == "Unauthorized"


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


@pytest.mark.parametrize(
    ("method", "path", "status", "kind"),
    [
        ("GET", "/v1/services/nosuch/versions", 404, "NotFound"),
        ("POST", "/v1/services/web/promote", 502, "GatewayRejected"),
        ("POST", "/v1/services/web/rollback", 500, "Internal"),
        ("GET", "/v1/nosuchroute", 404, "NotFound"),
        ("DELETE", "/v1/services/web/header-routes/", 405, "Invalid"),  # an empty header name
        ("POST", "/v1/services/web/rollout/explode", 422, "Invalid"),
    ],
)
def test_errors_map_to_their_status_and_kind(api: TestClient, method: str, path: str, status: int, kind: str):
    r = api.request(method, path, headers=auth())
    assert r.status_code == status, r.text
    body = contract.ErrorBody.model_validate(r.json())
    assert body.kind == kind and "\n" not in body.error and "Traceback" not in body.error


def test_a_bug_answers_one_line_naming_the_daemon_log(api: TestClient, tmp_path: Path):
    r = api.post("/v1/services/web/rollback", headers=auth())
    assert r.status_code == 500
    assert str(ProjectPaths(tmp_path).daemon_log) in r.json()["error"]


def test_weights_answer_is_typed(api: TestClient):
    r = api.post("/v1/services/web/weights", json={"weights": {"stable": 100}}, headers=auth())
    assert contract.Weights.model_validate(r.json()).weights == {"3f9c2a1b7d04": 100}


# -- the CLI's side: each kind back to its class and exit code --------------------------------------


def client_for(root: Path) -> DaemonClient:
    c = DaemonClient.__new__(DaemonClient)
    c.paths = ProjectPaths(root)
    return c


@pytest.mark.parametrize(
    ("status", "kind", "cls", "exit_code"),
    [
        (404, "NotFound", ERROR_KINDS["NotFound"], 2),
        (409, "Conflict", ERROR_KINDS["Conflict"], 2),
        (422, "Invalid", ERROR_KINDS["Invalid"], 2),
        (502, "GatewayRejected", ERROR_KINDS["GatewayRejected"], 1),
        (504, "GatewayTimeout", ERROR_KINDS["GatewayTimeout"], 1),
        (503, "Unavailable", ERROR_KINDS["Unavailable"], 1),
        (500, "Internal", DaemonFailed, 1),
        (500, "NotFound", DaemonFailed, 1),
    ],
)
def test_the_cli_raises_each_kind_with_its_exit_code(tmp_path: Path, status, kind, cls, exit_code):
    e = client_for(tmp_path)._error(status, {"kind": kind, "error": "what went wrong"})
    assert type(e) is cls and e.exit_code == exit_code and "what went wrong" in e.line()


def test_a_500_names_the_daemon_log_once(tmp_path: Path):
    c = client_for(tmp_path)
    log = str(ProjectPaths(tmp_path).daemon_log)
    assert c._error(500, {"kind": "Internal", "error": "boom"}).line() == f"boom (see {log})"
    assert c._error(500, {"kind": "Internal", "error": f"boom; details in {log}"}).line().count(log) == 1
    garbled = c._error(500, "not an error body")
    assert isinstance(garbled, ShiploopError) and garbled.exit_code == 1 and log in garbled.line()
