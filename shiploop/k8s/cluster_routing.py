"""The routing ConfigMap as deploy writes it and the controller changes it (pure: data in, data out).

Two keys, written together in one update so they never disagree:
- `routing.json`: the routing-state document the gateway's agent renders (k8s/routing_doc.py);
- `deployments.json`: which versions of each service run, on which track, with their own
  service.yaml (as the daemon's store keeps it), so the controller knows the stable, the
  candidate and the policy the candidate ships with, without the project's working tree.

The controller only moves weights between the targets deploy placed and drops a
version's targets and cluster when its rollout ends; it never invents an endpoint.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from typing import Any

from shiploop.errors import Invalid, NotFound
from shiploop.gateway.model import RoutingState
from shiploop.k8s import routing_doc
from shiploop.k8s.manifests import ROUTING_KEY
from shiploop.naming import Track, cluster_name
from shiploop.spec import ServiceSpec

DEPLOYMENTS_KEY = "deployments.json"


@dataclass(frozen=True)
class DeployedVersion:
    version: str
    track: str
    weight: int
    spec: dict[str, Any]  # the version's service.yaml as loaded (ServiceSpec, JSON mode)


@dataclass(frozen=True)
class ClusterRouting:
    state: RoutingState
    services: dict[str, tuple[DeployedVersion, ...]]

    def versions(self, service: str) -> tuple[DeployedVersion, ...]:
        if service not in self.services:
            known = ", ".join(sorted(self.services)) or "none"
            raise NotFound(f"no service {service!r} in the cluster (deployed: {known})",
                           hint="shiploop deploy --target kubernetes")  # fmt: skip
        return self.services[service]

    def with_weights(self, service: str, weights: dict[str, int]) -> ClusterRouting:
        """Each named version's targets at its weight (every route of the service)."""
        versions = self.versions(service)
        unknown = set(weights) - {v.version for v in versions}
        if unknown:
            raise NotFound(f"{service}@{sorted(unknown)[0]} is not deployed in the cluster")
        by_cluster = {cluster_name(service, v): w for v, w in weights.items()}
        routes = tuple(
            replace(r, targets=tuple(replace(t, weight=by_cluster.get(t.cluster, t.weight)) for t in r.targets))
            for r in self.state.routes
        )
        kept = tuple(replace(v, weight=weights.get(v.version, v.weight)) for v in versions)
        return ClusterRouting(replace(self.state, routes=routes), {**self.services, service: kept})

    def with_track(self, service: str, version: str, track: str) -> ClusterRouting:
        kept = tuple(replace(v, track=track) if v.version == version else v for v in self.versions(service))
        return ClusterRouting(self.state, {**self.services, service: kept})

    def without(self, service: str, version: str) -> ClusterRouting:
        """The version out of the router: its targets and its cluster gone (its Deployment stays until the
        next deploy prunes it: the controller may not delete Deployments)."""
        gone = cluster_name(service, version)
        routes = tuple(replace(r, targets=tuple(t for t in r.targets if t.cluster != gone)) for r in self.state.routes)
        clusters = tuple(c for c in self.state.clusters if c.name != gone)
        kept = tuple(v for v in self.versions(service) if v.version != version)
        return ClusterRouting(replace(self.state, routes=routes, clusters=clusters), {**self.services, service: kept})

    def one(self, service: str, track: str) -> DeployedVersion | None:
        return next((v for v in self.versions(service) if v.track == track), None)


def deployed(spec: ServiceSpec, version: str, track: str, weight: int) -> DeployedVersion:
    # `directory` is where the spec was loaded from on the deploying machine: meaningless in the cluster.
    return DeployedVersion(version, str(track), weight, spec.model_dump(mode="json", exclude={"directory"}))


def parse(data: dict[str, str], where: str = "routing ConfigMap") -> ClusterRouting:
    if ROUTING_KEY not in data:
        raise Invalid(f"no {ROUTING_KEY} in it", where=where, hint="shiploop deploy --target kubernetes")
    state = routing_doc.loads(data[ROUTING_KEY], f"{where} {ROUTING_KEY}")
    try:
        doc = json.loads(data.get(DEPLOYMENTS_KEY) or "{}")
        services = {
            name: tuple(DeployedVersion(**v) for v in versions) for name, versions in doc.get("services", {}).items()
        }
    except (ValueError, TypeError, AttributeError) as e:
        raise Invalid(f"malformed {DEPLOYMENTS_KEY} ({type(e).__name__}: {e})", where=where) from None
    return ClusterRouting(state, services)


def to_data(routing: ClusterRouting, data: dict[str, str] | None = None) -> dict[str, str]:
    """`data` with both keys replaced (other keys kept)."""
    services = {name: [asdict(v) for v in versions] for name, versions in sorted(routing.services.items())}
    deployments = json.dumps({"services": services}, indent=1, sort_keys=True) + "\n"
    return {**(data or {}), ROUTING_KEY: routing_doc.dumps(routing.state), DEPLOYMENTS_KEY: deployments}


def stable_of(routing: ClusterRouting, service: str) -> DeployedVersion | None:
    return routing.one(service, Track.STABLE) if service in routing.services else None
