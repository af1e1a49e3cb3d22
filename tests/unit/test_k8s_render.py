"""`shiploop render --target kubernetes|gateway-api`: golden files for the shop, the official schemas of
three Kubernetes minor versions, Pod Security "restricted", profiles, k8s/ templates, HTTPRoutes."""

from __future__ import annotations

import functools
import shutil
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from shiploop.errors import Invalid, NotFound
from shiploop.gateway.model import Cluster, Endpoint, Match, Route, RoutingState, WeightedTarget
from shiploop.k8s import gateway_api, routing_doc
from shiploop.k8s.render import render, to_yaml, write
from shiploop.spec import load_project

ROOT = Path(__file__).resolve().parents[2]
SHOP = ROOT / "examples" / "shop"
GOLDEN = Path(__file__).parent / "golden"
# The three newest minor versions kubernetes-validate ships schemas for.
KUBERNETES_VERSIONS = ("1.35.0", "1.36.0", "1.37.0")
# kubernetes-validate reads and parses the version's whole _definitions.json again for every object
# (~0.15 s each here); the files do not change during a run, so they are read once.
kubernetes_validate.utils.schema_contents = functools.lru_cache(maxsize=None)(kubernetes_validate.utils.schema_contents)
REGENERATE = "the shop's files or the renderer changed: regenerate with python -m tests.unit.test_k8s_render"


def shop_objects(target: str, profile: str | None = "prod") -> list[dict[str, Any]]:
    return render(load_project(SHOP), profile, target).objects


@pytest.mark.parametrize("target", ["kubernetes", "gateway-api"])
def test_shop_renders_as_the_golden_file(target: str):
    expected = (GOLDEN / f"shop-{target}-prod.yaml").read_text()
    assert to_yaml(shop_objects(target)) == expected, REGENERATE


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_passes_the_official_schema(version: str):
    objects = shop_objects("kubernetes") + shop_objects("kubernetes", None)
    objects += [o for o in shop_objects("gateway-api") if o["kind"] != "HTTPRoute"]  # a CRD: no schema shipped
    kinds = set()
    for obj in objects:
        kubernetes_validate.validate(obj, version, strict=True)
        kinds.add(obj["kind"])
    assert {"Deployment", "Service", "PodDisruptionBudget", "ConfigMap", "Role", "RoleBinding", "Lease"} <= kinds
    # The check itself can fail: a wrong type and an unknown field are caught.
    broken = next(o for o in objects if o["kind"] == "Deployment")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate({**broken, "spec": {**broken["spec"], "replicas": "3"}}, version, strict=True)
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate({**broken, "spec": {**broken["spec"], "replica": 3}}, version, strict=True)


def pod_specs(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o["spec"]["template"]["spec"] for o in objects if o["kind"] == "Deployment"]


def test_every_pod_meets_pod_security_restricted():
    objects = shop_objects("kubernetes")
    namespace = next(o for o in objects if o["kind"] == "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    pods = pod_specs(objects)
    assert len(pods) == 4  # api, web, gateway, controller
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for c in pod["containers"] + pod.get("initContainers", []):
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True, c["name"]
            assert sc["capabilities"] == {"drop": ["ALL"]} and sc["runAsNonRoot"] is True, c["name"]
            assert sc["runAsUser"] >= 10000, c["name"]
            assert c["resources"]["limits"]["memory"] and c["resources"]["requests"]["cpu"], c["name"]
            if c not in pod.get("initContainers", []):
                assert "readinessProbe" in c and "livenessProbe" in c, c["name"]


def test_versions_carry_labels_probes_from_health_and_scrape_annotations():
    objects = shop_objects("kubernetes")
    api = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"].startswith("api-"))
    version = api["metadata"]["name"].removeprefix("api-")
    labels = api["spec"]["template"]["metadata"]["labels"]
    assert labels["shiploop.dev/service"] == "api" and labels["shiploop.dev/version"] == version
    assert labels["shiploop.dev/track"] == "stable"
    app = api["spec"]["template"]["spec"]["containers"][0]
    assert app["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}  # health.path of api
    assert app["readinessProbe"]["timeoutSeconds"] == 2  # health.timeout: 2s
    assert app["image"].startswith(f"registry.example.com/shop/api:{version}-")
    annotations = api["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/port"] == "8080"
    service = next(o for o in objects if o["kind"] == "Service" and o["metadata"]["name"] == f"api-{version}")
    pdb = next(o for o in objects if o["kind"] == "PodDisruptionBudget" and o["metadata"]["name"] == f"api-{version}")
    assert (
        service["spec"]["selector"] == pdb["spec"]["selector"]["matchLabels"] == api["spec"]["selector"]["matchLabels"]
    )


def test_the_routing_configmap_is_the_state_the_agent_reads():
    objects = shop_objects("kubernetes")
    cm = next(o for o in objects if o["kind"] == "ConfigMap")
    state = routing_doc.loads(cm["data"]["routing.json"])
    routing_doc.check(state)
    assert state.listen_address == "0.0.0.0"
    hosts = {e.host for c in state.clusters for e in c.endpoints}
    assert all(h.endswith(".shop.svc.cluster.local") for h in hosts) and len(hosts) == 2
    web = next(r for r in state.routes if r.targets[0].cluster.startswith("web_"))
    assert web.host == "shop.example.com"  # the prod profile's host for web
    assert routing_doc.loads(routing_doc.dumps(state)) == state


def test_controller_rbac_is_namespaced_and_names_its_objects():
    objects = shop_objects("kubernetes")
    assert not [o for o in objects if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    role = next(o for o in objects if o["kind"] == "Role")
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"]
        assert "secrets" not in rule["resources"]
        if {"update", "patch"} & set(rule["verbs"]) and rule["resources"] != ["events"]:
            assert rule.get("resourceNames"), rule  # writes only to named objects
    gateway = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "shiploop-gateway")
    assert gateway["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


def test_profiles_override_replicas_resources_env_hosts_and_namespace(tmp_path: Path):
    shutil.copytree(SHOP, tmp_path / "shop", ignore=shutil.ignore_patterns(".shiploop"))
    root = tmp_path / "shop"
    (root / "shiploop.yaml").write_text(
        "name: shop\n"
        "profiles:\n"
        "  staging:\n"
        "    namespace: shop-staging\n"
        "    branches: [develop]\n"
        "    resources: {cpu: 50m, memory: 64Mi, cpu_limit: '1', memory_limit: 1Gi}\n"
        "    env: {LOG_LEVEL: debug}\n"
        "    services: {api: {replicas: 5, env: {LOG_LEVEL: info}}}\n"
    )
    plain = render(load_project(root), None).objects
    assert next(o for o in plain if o["kind"] == "Namespace")["metadata"]["name"] == "shop"
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/develop\n")
    chosen = render(load_project(root), None)  # chosen by the branch
    assert chosen.profile.name == "staging" and chosen.profile.why == "branch develop"
    assert chosen.namespace == "shop-staging"
    deployments = {o["metadata"]["name"].split("-")[0]: o for o in chosen.objects if o["kind"] == "Deployment"}
    assert deployments["api"]["spec"]["replicas"] == 5 and deployments["web"]["spec"]["replicas"] == 1
    app = deployments["web"]["spec"]["template"]["spec"]["containers"][0]
    assert app["resources"]["limits"] == {"cpu": "1", "memory": "1Gi"}
    env = {e["name"]: e["value"] for e in app["env"]}
    assert env["LOG_LEVEL"] == "debug" and env["SHOP_GATEWAY"] == "http://127.0.0.1:8080"
    api_env = {e["name"]: e["value"] for e in deployments["api"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert api_env["LOG_LEVEL"] == "info"
    with pytest.raises(NotFound, match="no profile 'prod'.*profiles: staging"):
        render(load_project(root), "prod")


def test_k8s_templates_merge_over_the_generated_objects(tmp_path: Path):
    shutil.copytree(SHOP, tmp_path / "shop", ignore=shutil.ignore_patterns(".shiploop"))
    k8s = tmp_path / "shop" / "api" / "k8s"
    k8s.mkdir()
    (k8s / "deployment.yaml.j2").write_text(
        "kind: Deployment\n"
        "metadata:\n"
        "  annotations: {team: payments, owner-of: '{{ service }}@{{ version }}'}\n"
        "spec:\n"
        "  revisionHistoryLimit: null\n"  # null removes a generated key
        "  template:\n"
        "    spec:\n"
        "      containers:\n"
        "        - name: app\n"
        "          env: [{name: FEATURE_X, value: 'on'}, {name: PORT, value: '9000'}]\n"
        "---\n"
        "apiVersion: v1\n"
        "kind: ConfigMap\n"
        "metadata: {name: '{{ name }}-extra', namespace: '{{ namespace }}'}\n"
        "data: {profile: '{{ profile }}'}\n"
    )
    objects = render(load_project(tmp_path / "shop"), "prod").objects
    api = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"].startswith("api-"))
    version = api["metadata"]["name"].removeprefix("api-")
    assert api["metadata"]["annotations"] == {"team": "payments", "owner-of": f"api@{version}"}
    assert "revisionHistoryLimit" not in api["spec"]
    app = api["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in app["env"]}
    assert env["FEATURE_X"] == "on" and env["PORT"] == "9000" and env["SHIPLOOP_SERVICE"] == "api"
    assert app["securityContext"]["readOnlyRootFilesystem"] is True  # the rest of the container stays
    extra = next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == f"api-{version}-extra")
    assert extra["data"] == {"profile": "prod"}
    web = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"].startswith("web-"))
    assert "annotations" not in web["metadata"]  # api's templates touch api only
    (k8s / "deployment.yaml.j2").write_text("kind: Deployment\nmetadata: {name: '{{ nope }}'}\n")
    with pytest.raises(Invalid, match="deployment.yaml.j2.*'nope' is undefined"):
        render(load_project(tmp_path / "shop"), "prod")


def test_render_writes_one_file_per_object(tmp_path: Path):
    objects = shop_objects("kubernetes")
    written = write(objects, tmp_path / "out")
    assert len(written) == len(objects) == len({p.name for p in written})
    again = [d for p in sorted(written) for d in yaml.safe_load_all(p.read_text())]
    assert sorted(map(repr, again)) == sorted(map(repr, objects))


def test_http_routes_carry_weights_and_header_matches():
    clusters = tuple(Cluster(f"web_{v}", (Endpoint(f"web-{v}.shop.svc", 80),)) for v in ("aaa", "bbb"))
    weighted = (WeightedTarget("web_aaa", 90, "web@aaa"), WeightedTarget("web_bbb", 10, "web@bbb"))
    state = RoutingState(
        clusters,
        (
            Route("web-0-h0", Match(prefix="/api/", headers=(("x-user", "ana"),)), (weighted[1],), rewrite="/"),
            Route("web-0", Match(prefix="/api/", methods=("GET", "HEAD")), weighted, rewrite="/", timeout_s=2.5),
        ),
    )
    (route,) = gateway_api.http_routes(state, "shop", "shop", "shiploop-gateway", {})
    personal, main = route["spec"]["rules"]
    assert personal["matches"] == [
        {
            "path": {"type": "PathPrefix", "value": "/api/"},
            "headers": [{"type": "Exact", "name": "x-user", "value": "ana"}],
        }
    ]
    assert personal["backendRefs"] == [{"name": "web-bbb", "port": 80, "weight": 10}]
    assert [m["method"] for m in main["matches"]] == ["GET", "HEAD"]
    assert [(b["name"], b["weight"]) for b in main["backendRefs"]] == [("web-aaa", 90), ("web-bbb", 10)]
    assert main["timeouts"] == {"request": "2500ms"}
    assert main["filters"][0]["urlRewrite"]["path"] == {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}


if __name__ == "__main__":
    for target in ("kubernetes", "gateway-api"):
        path = GOLDEN / f"shop-{target}-prod.yaml"
        path.write_text(to_yaml(shop_objects(target)))
        print("wrote", path)


def test_every_volume_mount_names_a_volume_of_its_pod():
    """The API server refuses a pod whose container mounts a volume the pod does not have (the schemas
    cannot tell: they check shapes, not references)."""
    for target in ("kubernetes", "gateway-api"):
        for obj in shop_objects(target):
            if obj["kind"] != "Deployment":
                continue
            pod = obj["spec"]["template"]["spec"]
            volumes = {v["name"] for v in pod.get("volumes", [])}
            for c in pod.get("initContainers", []) + pod["containers"]:
                for m in c.get("volumeMounts", []):
                    assert m["name"] in volumes, (obj["metadata"]["name"], c["name"], m["name"])
