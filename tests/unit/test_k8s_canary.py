"""`deploy --target kubernetes` as a canary, against RecordedApiServer (a MOCK of the API server's documented
apply/list/get/delete shapes, tests/unit/test_k8s_deploy.py): with a stable version of a service with a
`rollout:` block running, the new version goes in beside it at weight 0 and the stable is left running."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shiploop.errors import Conflict
from shiploop.k8s import deploy as k8s_deploy
from shiploop.k8s.canary import place
from shiploop.k8s.cluster_routing import ClusterRouting, deployed, parse, to_data
from shiploop.k8s.desired import initial_state, version_service
from shiploop.k8s.manifests import LABEL, ROUTING_CONFIGMAP
from shiploop.k8s.render import Rendered, render
from shiploop.naming import Track, cluster_name
from shiploop.spec import load_project
from tests.unit.test_k8s_deploy import ROOT, RecordedApiServer, client_for, ready

OLD = "0123456789ab"  # the stable web version running in the cluster
CM_PATH = f"/api/v1/namespaces/shop/configmaps/{ROUTING_CONFIGMAP}"
LABELS = {"app.kubernetes.io/managed-by": "shiploop", "app.kubernetes.io/part-of": "shop"}


def cluster_routing(rendered: Rendered) -> ClusterRouting:
    """What the previous deploy left: web at OLD (stable, all traffic), api at the version rendered now."""
    specs = {v.spec.name: v for v in rendered.versions}
    versions = [(specs["api"].spec, specs["api"].version), (specs["web"].spec, OLD)]
    hosts = {v.spec.name: v.settings.host for v in rendered.versions if v.settings.host}
    state = initial_state(versions, "shop", hosts)
    return ClusterRouting(state, {s.name: (deployed(s, vid, Track.STABLE, 100),) for s, vid in versions})


def seed(api: RecordedApiServer, routing: ClusterRouting) -> None:
    meta = {"name": ROUTING_CONFIGMAP, "namespace": "shop", "labels": LABELS, "resourceVersion": "7"}
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "data": to_data(routing), "metadata": meta}
    api.objects[CM_PATH] = cm
    stable = {"apiVersion": "apps/v1", "kind": "Deployment",
              "metadata": {"name": version_service("web", OLD), "namespace": "shop", "labels": LABELS},
              "spec": {"selector": {"matchLabels": {"a": "b"}}, "replicas": 1,
                       "template": {"metadata": {"labels": {"a": "b"}},
                                    "spec": {"containers": [{"name": "app", "image": "i"}]}}}}  # fmt: skip
    api.seed("/apis/apps/v1/namespaces/shop/deployments", stable)


def applied(api: RecordedApiServer, kind: str, name: str) -> dict[str, Any]:
    patches = [json.loads(r.content) for r in api.requests if r.method == "PATCH"]
    return next(p for p in patches if p["kind"] == kind and p["metadata"]["name"] == name)


def deploy_once(api: RecordedApiServer, rendered: Rendered) -> tuple[Any, list[str]]:
    client = client_for(api)
    placed = place(rendered.objects, list(rendered.versions), "shop", k8s_deploy.current_routing(client, "shop"))
    for o in placed.objects:
        if o["kind"] == "Deployment":
            api.statuses[o["metadata"]["name"]] = ready(o["spec"]["replicas"])
    result = k8s_deploy.deploy(client, placed.objects, "shop", "shop", timeout_s=5, keep=placed.keep,
                               sleep=lambda _: None)  # fmt: skip
    return result, placed.said


def test_a_new_version_goes_in_beside_the_running_stable_at_weight_zero():
    rendered = render(load_project(ROOT / "examples" / "shop"), "prod")
    new = next(v.version for v in rendered.versions if v.spec.name == "web")
    api = RecordedApiServer()
    seed(api, cluster_routing(rendered))

    result, said = deploy_once(api, rendered)
    assert said == [f"web: {new} placed beside stable {OLD} at 0%; the controller rolls it out"]
    # The stable keeps running (not pruned: it is not rendered now); the candidate is labelled canary.
    assert f"Deployment/{version_service('web', OLD)}" not in result.pruned
    assert f"/apis/apps/v1/namespaces/shop/deployments/{version_service('web', OLD)}" in api.objects
    candidate = applied(api, "Deployment", version_service("web", new))
    assert candidate["metadata"]["labels"][f"{LABEL}/track"] == "canary"
    assert candidate["spec"]["template"]["metadata"]["labels"][f"{LABEL}/track"] == "canary"
    # The routing: every web route sends to the stable at 100 and to the candidate at 0; api is untouched.
    routing = parse(applied(api, "ConfigMap", ROUTING_CONFIGMAP)["data"])
    web_routes = [r for r in routing.state.routes if r.targets[0].cluster.startswith("web_")]
    assert web_routes and all(
        [(t.cluster, t.weight) for t in r.targets] == [(cluster_name("web", OLD), 100), (cluster_name("web", new), 0)]
        for r in web_routes
    )
    endpoints = {c.name: c.endpoints[0].host for c in routing.state.clusters}
    assert endpoints[cluster_name("web", new)] == f"{version_service('web', new)}.shop.svc.cluster.local"
    assert [(v.version, v.track, v.weight) for v in routing.versions("web")] == [
        (OLD, "stable", 100),
        (new, "canary", 0),
    ]
    assert [v.track for v in routing.versions("api")] == ["stable"]
    assert routing.versions("web")[1].spec["rollout"]["steps"]  # the policy the candidate ships with


def test_deploying_again_mid_rollout_keeps_the_weights_and_a_different_candidate_is_refused(tmp_path: Any):
    rendered = render(load_project(ROOT / "examples" / "shop"), "prod")
    new = next(v.version for v in rendered.versions if v.spec.name == "web")
    api = RecordedApiServer()
    seed(api, cluster_routing(rendered))
    deploy_once(api, rendered)
    # The controller moved the weights to 50/50 meanwhile.
    cm = applied(api, "ConfigMap", ROUTING_CONFIGMAP)
    api.objects[CM_PATH] = {
        **cm,
        "data": to_data(parse(cm["data"]).with_weights("web", {OLD: 50, new: 50}), cm["data"]),
    }
    api.requests.clear()

    result, said = deploy_once(api, rendered)
    assert said == []
    again = parse(applied(api, "ConfigMap", ROUTING_CONFIGMAP)["data"])
    assert {v.version: v.weight for v in again.versions("web")} == {OLD: 50, new: 50}
    assert not [p for p in result.pruned if p.endswith(OLD)]

    # Another new version while this candidate is still being judged: refused, nothing applied.
    other = Rendered(rendered.objects, rendered.profile, rendered.namespace,
                     tuple(v if v.spec.name != "web" else type(v)(v.spec, "fedcba987654", v.image, v.settings)
                           for v in rendered.versions))  # fmt: skip
    current = k8s_deploy.current_routing(client_for(api), "shop")
    with pytest.raises(Conflict, match=f"web@{new} is still a candidate"):
        place(other.objects, list(other.versions), "shop", current)


def test_the_first_deploy_is_a_cutover_as_render_prints_it():
    rendered = render(load_project(ROOT / "examples" / "shop"), "prod")
    api = RecordedApiServer()
    result, said = deploy_once(api, rendered)
    assert said == []
    cm = next(o for o in rendered.objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == ROUTING_CONFIGMAP)
    assert applied(api, "ConfigMap", ROUTING_CONFIGMAP) == cm
