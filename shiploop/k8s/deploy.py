"""`shiploop deploy --target kubernetes`: apply exactly what `shiploop render` prints, prune what
shiploop applied before and no longer renders, and wait for the Deployments with a diagnosis.

Server-side apply (field manager `shiploop`, forced: shiploop owns the fields it renders) through
lightkube, a maintained client; no kubectl. Pruning lists each kind by the labels every rendered
object carries (managed-by shiploop, part-of the project) and deletes the ones not rendered now.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from shiploop.errors import Unavailable
from shiploop.k8s.cluster_routing import ClusterRouting, parse
from shiploop.k8s.diagnose import deployment_ready, diagnose
from shiploop.k8s.manifests import ROUTING_CONFIGMAP

FIELD_MANAGER = "shiploop"
# Namespaced kinds shiploop renders (the Namespace itself is never pruned).
PRUNE_KINDS = (
    ("apps/v1", "Deployment"),
    ("v1", "Service"),
    ("policy/v1", "PodDisruptionBudget"),
    ("v1", "ConfigMap"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("v1", "ServiceAccount"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("coordination.k8s.io/v1", "Lease"),
)


@dataclass
class DeployResult:
    applied: list[str] = field(default_factory=list)  # "Kind/name"
    pruned: list[str] = field(default_factory=list)
    ready: list[str] = field(default_factory=list)


def _resource(api_version: str, kind: str) -> Any:
    from lightkube.generic_resource import get_generic_resource
    from lightkube.resources import apps_v1, coordination_v1, core_v1, networking_v1, policy_v1, rbac_authorization_v1

    modules = {
        "v1": core_v1,
        "apps/v1": apps_v1,
        "policy/v1": policy_v1,
        "networking.k8s.io/v1": networking_v1,
        "rbac.authorization.k8s.io/v1": rbac_authorization_v1,
        "coordination.k8s.io/v1": coordination_v1,
    }
    module = modules.get(api_version)
    if module is not None and hasattr(module, kind):
        return getattr(module, kind)
    group, _, version = api_version.rpartition("/")
    found = get_generic_resource(api_version, kind)
    if found is None:
        raise Unavailable(f"cannot apply {kind} ({api_version}, group {group!r}) yet", hint="apply it with kubectl")
    return found


def connect(context: str | None, namespace: str, transport: Any = None, server: str | None = None) -> Any:
    """A lightkube client: the kubeconfig (KUBECONFIG or ~/.kube/config, `context`), or in-cluster;
    `server`/`transport` only for tests against recorded responses."""
    from lightkube import Client, ConfigError, KubeConfig

    try:
        if server is not None:
            config = KubeConfig.from_dict(
                {
                    "clusters": [{"name": "given", "cluster": {"server": server}}],
                    "users": [{"name": "given", "user": {"token": "given"}}],
                    "contexts": [{"name": "given", "context": {"cluster": "given", "user": "given"}}],
                    "current-context": "given",
                }
            )
            return Client(config=config, namespace=namespace, field_manager=FIELD_MANAGER, transport=transport)
        config = KubeConfig.from_env()
        return Client(config=config.get(context_name=context), namespace=namespace, field_manager=FIELD_MANAGER)
    except ConfigError as e:
        raise Unavailable(
            f"no Kubernetes cluster configured ({e})",
            hint="set KUBECONFIG or write ~/.kube/config (kubectl config get-contexts lists the contexts)",
        ) from None


@contextmanager
def _api(what: str) -> Iterator[None]:
    """An API error as one line: what shiploop tried and what the server said."""
    from lightkube import ApiError

    try:
        yield
    except ApiError as e:
        status = e.status
        raise Unavailable(
            f"the API server refused to {what}: {status.code} {status.reason}: {status.message}",
            hint="check what your user may do: kubectl auth can-i --list",
        ) from None


def apply_all(client: Any, objects: list[dict[str, Any]]) -> list[str]:
    from lightkube import codecs

    applied = []
    for obj in objects:
        resource = codecs.from_dict(obj)
        key = f"{obj['kind']}/{obj['metadata']['name']}"
        ns = obj["metadata"].get("namespace")
        with _api(f"apply {key}"):
            client.apply(resource, namespace=ns, field_manager=FIELD_MANAGER, force=True)
        applied.append(key)
    return applied


def prune(client: Any, namespace: str, project: str, keep: set[str]) -> list[str]:
    selector = {"app.kubernetes.io/managed-by": "shiploop", "app.kubernetes.io/part-of": project}
    pruned = []
    for api_version, kind in PRUNE_KINDS:
        res = _resource(api_version, kind)
        with _api(f"list {kind}"):
            items = list(client.list(res, namespace=namespace, labels=selector))
        for item in items:
            name = item.metadata.name
            if f"{kind}/{name}" not in keep:
                with _api(f"delete {kind}/{name}"):
                    client.delete(res, name, namespace=namespace)
                pruned.append(f"{kind}/{name}")
    return pruned


def _previous_log_tail(client: Any, namespace: str, pod: str, container: str) -> str:
    """The last line the crashed run wrote: the log subresource with `previous=true` (which Client.log
    does not offer), built with lightkube's own request helpers."""
    from lightkube.resources.core_v1 import PodLog

    inner = client._client
    params = {"container": container, "tailLines": 1, "previous": "true"}
    request = inner.prepare_request("get", PodLog, name=pod, namespace=namespace, params=params)
    response = inner.send(inner.build_adapter_request(request))
    inner.raise_for_status(response)
    return str(response.text)


def _last_log(client: Any, namespace: str) -> Callable[[str, str], str | None]:
    def read(pod: str, container: str) -> str | None:
        from lightkube import ApiError

        try:
            text = _previous_log_tail(client, namespace, pod, container).strip()
        except ApiError:
            return None
        return text.splitlines()[-1] if text else None

    return read


def wait_ready(
    client: Any,
    namespace: str,
    deployments: list[str],
    timeout_s: float,
    *,
    poll_s: float = 2.0,
    say: Callable[[str], None] = lambda _: None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> list[str]:
    from lightkube.resources.apps_v1 import Deployment
    from lightkube.resources.core_v1 import Pod

    pending = list(deployments)
    deadline = clock() + timeout_s
    last_log = _last_log(client, namespace)
    while True:
        final = clock() >= deadline
        for name in list(pending):
            with _api(f"get Deployment/{name}"):
                d = client.get(Deployment, name, namespace=namespace).to_dict()
            if deployment_ready(d):
                pending.remove(name)
                say(f"{name} ready")
                continue
            labels = (d.get("spec") or {}).get("selector", {}).get("matchLabels", {})
            with _api(f"list the pods of {name}"):
                pods = list(client.list(Pod, namespace=namespace, labels=labels))
            problem = diagnose(d, [p.to_dict() for p in pods], last_log, final=final)
            if problem is not None:
                raise Unavailable(problem, hint="shiploop render --target kubernetes")  # what it runs
        if not pending:
            return deployments
        sleep(poll_s)


def current_routing(client: Any, namespace: str) -> ClusterRouting | None:
    """The routing ConfigMap's data as the cluster has it (k8s/cluster_routing.py), None before the first deploy."""
    from lightkube import ApiError
    from lightkube.resources.core_v1 import ConfigMap

    try:
        cm = client.get(ConfigMap, ROUTING_CONFIGMAP, namespace=namespace)
    except ApiError as e:
        if e.status.code == 404:
            return None
        refused = f"{e.status.code} {e.status.reason}: {e.status.message}"
        raise Unavailable(
            f"the API server refused to get ConfigMap/{ROUTING_CONFIGMAP}: {refused}", hint="kubectl auth can-i --list"
        ) from None
    return parse(dict(cm.data or {}), f"ConfigMap {namespace}/{ROUTING_CONFIGMAP}")


def deploy(
    client: Any,
    objects: list[dict[str, Any]],
    namespace: str,
    project: str,
    *,
    timeout_s: float,
    keep: set[str] | None = None,
    say: Callable[[str], None] = lambda _: None,
    **wait: Any,
) -> DeployResult:
    """`keep`: "Kind/name" of objects not applied now that prune must leave (a canary's stable)."""
    result = DeployResult()
    result.applied = apply_all(client, objects)
    say(f"applied {len(result.applied)} objects to namespace {namespace} (server-side apply, field manager shiploop)")
    result.pruned = prune(client, namespace, project, set(result.applied) | (keep or set()))
    if result.pruned:
        say("pruned " + ", ".join(result.pruned))
    # A Deployment scaled to 0 (by a profile or a template) has nothing to wait for.
    waiting = [o["metadata"]["name"] for o in objects if o["kind"] == "Deployment" and o["spec"].get("replicas", 1) > 0]
    result.ready = wait_ready(client, namespace, waiting, timeout_s, say=say, **wait)
    return result
