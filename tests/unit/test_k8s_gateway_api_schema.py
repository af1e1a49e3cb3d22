"""`shiploop render --target gateway-api` against the Gateway API's own HTTPRoute schema.

The schema is vendored from kubernetes-sigs/gateway-api v1.6.1 (Apache-2.0; tests/unit/schemas/), the
v1 version's openAPIV3Schema of the standard-channel CRD, and checked with `jsonschema`. What an API
server would also check and this cannot: the CRD's CEL rules (x-kubernetes-validations, e.g. "a
RequestRedirect and a URLRewrite filter may not be in one rule"), and the metadata's own schema.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from shiploop.gateway.model import Match, Route, RoutingState, WeightedTarget
from shiploop.k8s.gateway_api import http_routes
from shiploop.k8s.render import render
from shiploop.spec import load_project

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = Path(__file__).parent / "schemas" / "gateway-api-v1.6.1-httproute-v1.json"


@functools.cache
def validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA.read_text())
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    cls.check_schema(schema)
    return cls(schema)


def errors(route: dict[str, Any]) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator().iter_errors(route)]


def shop_routes() -> list[dict[str, Any]]:
    return [o for o in render(load_project(ROOT / "examples" / "shop"), "prod", "gateway-api").objects
            if o["kind"] == "HTTPRoute"]  # fmt: skip


def test_the_shops_httproutes_match_the_gateway_api_schema():
    routes = shop_routes()
    assert routes
    for route in routes:
        assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
        assert errors(route) == [], route["metadata"]["name"]


def test_every_kind_of_match_and_weights_match_the_schema():
    """Exact, prefix and regex paths, methods, header matches, weights: each shape http_routes writes."""
    t = (WeightedTarget("web_aaaaaaaaaaaa", 90, "web@a"), WeightedTarget("web_bbbbbbbbbbbb", 10, "web@b"))
    state = RoutingState(
        (),
        (
            Route("web-0", Match(path="/exact"), t, host="shop.example.com"),
            Route("web-1", Match(prefix="/api/", methods=("GET", "POST")), t, rewrite="/", timeout_s=2.5),
            Route("web-2", Match(regex="^/v[0-9]+/.*$", headers=(("x-user", "dee"),)), t[1:]),
        ),
    )
    routes = http_routes(state, "shop", "shop", "shiploop-gateway", {"app.kubernetes.io/part-of": "shop"})
    assert routes
    for route in routes:
        assert errors(route) == [], json.dumps(route, indent=1)


@pytest.mark.parametrize(
    ("break_it", "expected"),
    [
        (lambda r: r["spec"]["rules"][0]["backendRefs"][0].__setitem__("weight", -1), "is less than the minimum"),
        (lambda r: r["spec"]["rules"][0]["backendRefs"][0].pop("name"), "'name' is a required property"),
        (lambda r: r["spec"]["rules"][0]["matches"][0]["path"].__setitem__("type", "Glob"), "is not one of"),
        (lambda r: r["spec"]["rules"][0]["timeouts"].__setitem__("request", "2.5s"), "does not match"),
    ],
)
def test_the_check_itself_can_fail(break_it: Any, expected: str):
    route = copy.deepcopy(shop_routes()[0])
    break_it(route)
    assert any(expected in e for e in errors(route)), errors(route)
