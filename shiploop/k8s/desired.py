"""The routing state a fresh cluster starts from: every service's current version, stable, all traffic.

The same function the local control plane uses (server/routing.py) builds it; in
a cluster a version's endpoint is its Service's DNS name on port 80 and Envoy
listens on every address of its pod.
"""

from __future__ import annotations

from dataclasses import replace

from shiploop.gateway.model import Endpoint, RoutingState
from shiploop.naming import Track, cluster_name
from shiploop.server.routing import Placement, ServiceRouting, build_routing_state
from shiploop.spec import ServiceSpec

GATEWAY_PORT = 8080
SERVICE_PORT = 80


def version_service(service: str, version: str) -> str:
    """The Kubernetes Service (and Deployment) of one version: fits a DNS label (spec/models.py _MAX_NAME)."""
    return f"{service}-{version}"


def service_host(service: str, version: str, namespace: str) -> str:
    return f"{version_service(service, version)}.{namespace}.svc.cluster.local"


def initial_state(versions: list[tuple[ServiceSpec, str]], namespace: str, hosts: dict[str, str]) -> RoutingState:
    """`versions`: (spec, version id) per service; `hosts`: a profile's host name per service."""
    services = []
    for spec, vid in versions:
        host = hosts.get(spec.name)
        if host is not None:
            spec = spec.model_copy(update={"routes": [r.model_copy(update={"host": host}) for r in spec.routes]})
        services.append(ServiceRouting(spec, (Placement(vid, Track.STABLE, 100),)))
    state = build_routing_state(services, lambda _s, _v: [SERVICE_PORT], GATEWAY_PORT)
    owners = {cluster_name(spec.name, vid): (spec.name, vid) for spec, vid in versions}
    clusters = tuple(
        replace(c, endpoints=(Endpoint(service_host(*owners[c.name], namespace), SERVICE_PORT),))
        for c in state.clusters
    )
    return replace(state, clusters=clusters, listen_address="0.0.0.0")
