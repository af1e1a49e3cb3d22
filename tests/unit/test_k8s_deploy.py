"""`shiploop deploy --target kubernetes` against RecordedApiServer: a MOCK of the Kubernetes API server
(no API server can run on these machines) answering with the documented shapes of apply (PATCH
application/apply-patch+yaml), list, get, delete and the pod log subresource. lightkube, the real
client, talks to it over its real HTTP stack through httpx's MockTransport."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx2
import pytest

from shiploop.errors import Unavailable
from shiploop.k8s import deploy as k8s_deploy
from shiploop.k8s.diagnose import deployment_ready, diagnose
from shiploop.k8s.render import render
from shiploop.spec import load_project

ROOT = Path(__file__).resolve().parents[2]


def failure(code: int, reason: str, message: str) -> dict[str, Any]:
    """The API's documented error body (a Status)."""
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}  # fmt: skip


class RecordedApiServer:
    """A mock API server keeping objects by their URL; every request is recorded for the assertions."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}  # "/apis/apps/v1/namespaces/shop/deployments/web-1" -> object
        self.statuses: dict[str, dict[str, Any]] = {}  # Deployment name -> its .status
        self.pods: list[dict[str, Any]] = []
        self.logs: dict[tuple[str, str], str] = {}  # (pod, container) -> previous run's log
        self.requests: list[httpx2.Request] = []

    def seed(self, collection: str, obj: dict[str, Any]) -> None:
        self.objects[f"{collection}/{obj['metadata']['name']}"] = obj

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        path, query = (
            request.url.path,
            parse_qs(request.url.query.decode() if isinstance(request.url.query, bytes) else str(request.url.query)),
        )
        if request.method == "PATCH":
            body = json.loads(request.content)
            stored = {
                **body,
                "metadata": {**body["metadata"], "resourceVersion": "1", "uid": "u-" + body["metadata"]["name"]},
            }
            self.objects[path] = stored
            return httpx2.Response(200, json=stored)
        if request.method == "DELETE":
            self.objects.pop(path, None)
            return httpx2.Response(
                200, json={"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}
            )
        if path.endswith("/log"):
            pod = path.split("/")[-2]
            text = self.logs.get((pod, query["container"][0]))
            if text is None or query.get("previous") != ["true"]:
                return httpx2.Response(400, json=failure(400, "BadRequest", "previous terminated container not found"))
            return httpx2.Response(200, text=text)
        if path.endswith("/pods"):
            return httpx2.Response(
                200,
                json={"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": self.pods},
            )
        if path in self.objects:
            obj = dict(self.objects[path])
            if obj["kind"] == "Deployment":
                obj["status"] = self.statuses.get(obj["metadata"]["name"], {})
            return httpx2.Response(200, json=obj)
        selector = dict(kv.split("=", 1) for kv in query.get("labelSelector", [""])[0].split(",") if kv)
        items = [
            o for p, o in self.objects.items()
            if p.rsplit("/", 1)[0] == path and selector.items() <= o["metadata"].get("labels", {}).items()
        ]  # fmt: skip
        if items or path.split("/")[-1].endswith("s"):
            kind = path.split("/")[-1]
            return httpx2.Response(
                200,
                json={"kind": f"{kind}List", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": items},
            )
        return httpx2.Response(404, json=failure(404, "NotFound", "not found"))


@pytest.fixture
def api() -> RecordedApiServer:
    return RecordedApiServer()


def client_for(api: RecordedApiServer) -> Any:
    return k8s_deploy.connect(
        None, "shop", transport=httpx2.MockTransport(api.handle), server="https://recorded.invalid"
    )


def ready(replicas: int) -> dict[str, Any]:
    return {"observedGeneration": 1, "replicas": replicas, "updatedReplicas": replicas, "availableReplicas": replicas}


def test_deploy_applies_exactly_what_render_prints_prunes_the_rest_and_waits(api: RecordedApiServer):
    objects = render(load_project(ROOT / "examples" / "shop"), "prod").objects
    stale = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "api-000000000000", "namespace": "shop",
                     "labels": {"app.kubernetes.io/managed-by": "shiploop", "app.kubernetes.io/part-of": "shop"}},
        "spec": {"selector": {"matchLabels": {"a": "b"}},
                 "template": {"metadata": {"labels": {"a": "b"}},
                              "spec": {"containers": [{"name": "c", "image": "i"}]}}},
    }  # fmt: skip
    other = {**stale, "metadata": {**stale["metadata"], "name": "theirs", "labels": {"team": "x"}}}
    api.seed("/apis/apps/v1/namespaces/shop/deployments", stale)
    api.seed("/apis/apps/v1/namespaces/shop/deployments", other)
    for o in objects:
        if o["kind"] == "Deployment":
            api.statuses[o["metadata"]["name"]] = ready(o["spec"]["replicas"])
    said: list[str] = []
    result = k8s_deploy.deploy(
        client_for(api), objects, "shop", "shop", timeout_s=5, say=said.append, sleep=lambda _: None
    )

    patches = [r for r in api.requests if r.method == "PATCH"]
    assert len(patches) == len(objects)
    for request, obj in zip(patches, objects, strict=True):
        assert request.headers["content-type"] == "application/apply-patch+yaml"
        query = parse_qs(str(request.url.query.decode()))
        assert query["fieldManager"] == ["shiploop"] and query["force"] == ["true"]
        assert json.loads(request.content) == obj  # byte for byte what `shiploop render` prints
    assert result.pruned == ["Deployment/api-000000000000"]  # ours and no longer rendered; "theirs" stays
    assert "/apis/apps/v1/namespaces/shop/deployments/theirs" in api.objects
    assert set(result.ready) == {
        o["metadata"]["name"] for o in objects if o["kind"] == "Deployment" and o["spec"]["replicas"] > 0
    }
    assert "shiploop-controller" in result.ready  # the in-cluster controller runs (shiploop controller)


def test_a_crashing_version_is_one_line_with_its_last_log_line(api: RecordedApiServer):
    objects = render(load_project(ROOT / "examples" / "shop"), "prod").objects
    web = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"].startswith("web-"))
    name = web["metadata"]["name"]
    api.seed("/apis/apps/v1/namespaces/shop/deployments", web)
    api.statuses[name] = {"observedGeneration": 1, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 0}
    api.pods = [crashing_pod(f"{name}-7d4b9-x2k4p")]
    api.logs[(f"{name}-7d4b9-x2k4p", "app")] = "Traceback...\nKeyError: 'SHOP_GATEWAY'\n"
    with pytest.raises(Unavailable) as caught:
        k8s_deploy.wait_ready(client_for(api), "shop", [name], 5, sleep=lambda _: None)
    assert caught.value.line().startswith(
        f"{name}: container app of pod {name}-7d4b9-x2k4p keeps crashing (CrashLoopBackOff, last exit 1); "
        "its last log line: KeyError: 'SHOP_GATEWAY'"
    )


def test_an_api_refusal_is_one_line(api: RecordedApiServer):
    def forbidden(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(403, json=failure(403, "Forbidden", 'configmaps "shiploop-routing" is forbidden'))

    client = k8s_deploy.connect(
        None, "shop", transport=httpx2.MockTransport(forbidden), server="https://recorded.invalid"
    )
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "shiploop-routing", "namespace": "shop"}}
    with pytest.raises(
        Unavailable, match='refused to apply ConfigMap/shiploop-routing: 403 Forbidden: configmaps "shiploop-routing"'
    ):
        k8s_deploy.apply_all(client, [cm])


# -- diagnosis, on the documented shapes of Deployment and Pod status ----------------------------------


def crashing_pod(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"containers": [{"name": "app", "image": "r/web:1"}]},
            "status": {"containerStatuses": [{
        "name": "app", "image": "r/web:1", "imageID": "", "ready": False, "restartCount": 4,
        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 1m20s restarting failed container"}},
        "lastState": {"terminated": {"reason": "Error", "exitCode": 1}},
    }]}}  # fmt: skip


def waiting_pod(reason: str, message: str) -> dict[str, Any]:
    return {"metadata": {"name": "p"}, "status": {"containerStatuses": [
        {"name": "app", "image": "r/web:1", "state": {"waiting": {"reason": reason, "message": message}}},
    ]}}  # fmt: skip


DEPLOYMENT = {
    "metadata": {"name": "web-1", "generation": 1},
    "spec": {"replicas": 2},
    "status": {"observedGeneration": 1},
}


@pytest.mark.parametrize(
    ("pods", "status", "final", "expected"),
    [
        ([waiting_pod("ImagePullBackOff", 'Back-off pulling image "r/web:1"')], {}, False,
         'web-1: pod p cannot pull image r/web:1 (ImagePullBackOff: Back-off pulling image "r/web:1")'),
        ([crashing_pod("p")], {}, False,
         "web-1: container app of pod p keeps crashing (CrashLoopBackOff, last exit 1); its last log line: boom"),
        ([{"metadata": {"name": "p"}, "status": {"containerStatuses": [{"name": "app", "state": {"running": {}},
           "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}]}}], {}, False,
         "web-1: container app of pod p was OOMKilled (exit 137); raise memory_limit in the profile's resources"),
        ([waiting_pod("CreateContainerConfigError", 'secret "db" not found')], {}, False,
         "web-1: pod p refers to a missing Secret or ConfigMap (secret \"db\" not found)"),
        ([{"metadata": {"name": "p"}, "status": {"conditions": [{"type": "PodScheduled", "status": "False",
           "reason": "Unschedulable", "message": "0/3 nodes are available: 3 Insufficient memory."}]}}], {}, True,
         "web-1: pod p cannot be scheduled (Unschedulable: 0/3 nodes are available: 3 Insufficient memory.)"),
        ([], {"conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
              "message": 'ReplicaSet "web-1-5d8" has timed out progressing.'}]}, False,
         'web-1: rollout deadline exceeded (ReplicaSet "web-1-5d8" has timed out progressing.)'),
    ],
)  # fmt: skip
def test_each_failure_is_one_line(pods: list[dict[str, Any]], status: dict[str, Any], final: bool, expected: str):
    d = {**DEPLOYMENT, "status": {**DEPLOYMENT["status"], **status}}
    assert diagnose(d, pods, lambda pod, container: "boom", final=final) == expected


def test_on_its_way_is_no_problem_until_the_wait_ends():
    starting = [waiting_pod("ContainerCreating", "")]
    assert diagnose(DEPLOYMENT, starting, lambda p, c: None) is None
    assert diagnose(DEPLOYMENT, starting, lambda p, c: None, final=True) == (
        "web-1: 0 of 2 replicas available when the wait ended"
    )
    assert not deployment_ready(DEPLOYMENT)
    assert deployment_ready({**DEPLOYMENT, "status": {"observedGeneration": 1, **ready(2)}})
