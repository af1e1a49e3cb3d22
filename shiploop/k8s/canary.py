"""`deploy --target kubernetes` as a canary: the new version beside the running stable, at 0%.

For a service with a `rollout:` block whose stable version already runs in the
cluster (the routing ConfigMap's deployments.json says which), deploy does not
cut over: it applies the candidate's Deployment, Service and budget labelled
`canary`, keeps the stable's objects (they are not rendered now, and must not be
pruned), and writes the routing ConfigMap with the service's routes as the
cluster has them plus the candidate's targets at weight 0. The controller
(`shiploop controller`) starts the rollout and moves the weights from there.

A service without a `rollout:` block, or the first deploy, is a cutover, as
`render` prints it. Deploying again while the same candidate rolls out changes
nothing of its routing; a different candidate while one rolls out is refused.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from typing import Any

from shiploop.errors import Conflict
from shiploop.gateway.model import Cluster, Route, RoutingState, WeightedTarget
from shiploop.k8s.cluster_routing import ClusterRouting, deployed, parse, to_data
from shiploop.k8s.desired import version_service
from shiploop.k8s.manifests import LABEL, ROLLOUTS_CONFIGMAP, ROUTING_CONFIGMAP, VersionInput
from shiploop.naming import Track, cluster_name

Obj = dict[str, Any]
VERSION_KINDS = ("Deployment", "Service", "PodDisruptionBudget")


@dataclass
class Placed:
    objects: list[Obj]
    keep: set[str] = field(default_factory=set)  # "Kind/name" not applied now that prune must leave alone
    said: list[str] = field(default_factory=list)


def _owner(service: str, cluster: str) -> bool:
    return cluster.startswith(f"{service}_")  # cluster_name(service, version); names have no "_"


def _route_of(service: str, route: Route) -> bool:
    return bool(route.targets) and all(_owner(service, t.cluster) for t in route.targets)


def _merge(rendered: RoutingState, cluster: RoutingState, services: set[str]) -> RoutingState:
    """The rendered state with each of `services`' routes and clusters as `cluster` has them, in place."""
    routes: list[Route] = []
    emitted: set[str] = set()
    for r in rendered.routes:
        owner = next((s for s in services if _route_of(s, r)), None)
        if owner is None:
            routes.append(r)
        elif owner not in emitted:
            emitted.add(owner)
            routes += [c for c in cluster.routes if _route_of(owner, c)]
    clusters: list[Cluster] = [c for c in rendered.clusters if not any(_owner(s, c.name) for s in services)]
    clusters += [c for c in cluster.clusters if any(_owner(s, c.name) for s in services)]
    return replace(rendered, routes=tuple(routes), clusters=tuple(clusters))


def _with_candidate(state: RoutingState, service: str, version: str, cluster: Cluster) -> RoutingState:
    target = WeightedTarget(cluster_name(service, version), 0, f"{service}@{version}")
    routes = tuple(replace(r, targets=(*r.targets, target)) if _route_of(service, r) else r for r in state.routes)
    return replace(state, routes=routes, clusters=(*state.clusters, cluster))


def _as_canary(objects: list[Obj], name: str) -> None:
    for o in objects:
        if o["kind"] in VERSION_KINDS and o["metadata"]["name"] == name:
            o["metadata"]["labels"][f"{LABEL}/track"] = str(Track.CANARY)
            template = o.get("spec", {}).get("template", {}).get("metadata", {}).get("labels")
            if template is not None:
                template[f"{LABEL}/track"] = str(Track.CANARY)


def place(objects: list[Obj], versions: list[VersionInput], namespace: str, current: ClusterRouting | None) -> Placed:
    """The objects to apply: `render`'s, with each new version of a service with a rollout placed as a canary."""
    if current is None:
        return Placed(objects)
    objects = copy.deepcopy(objects)
    cm_index = next(i for i, o in enumerate(objects) if o["kind"] == "ConfigMap"
                    and o["metadata"]["name"] == ROUTING_CONFIGMAP)  # fmt: skip
    rendered = parse(objects[cm_index]["data"], "the rendered routing ConfigMap")
    placed = Placed(objects)
    from_cluster: set[str] = set()
    services = dict(rendered.services)
    candidates: list[tuple[str, str, Cluster]] = []
    for v in versions:
        name = v.spec.name
        if "rollout" not in v.spec.model_fields_set or name not in current.services:
            continue
        stable = current.one(name, Track.STABLE)
        if stable is None:
            continue
        from_cluster.add(name)
        services[name] = current.services[name]
        # The stable's objects are not rendered now: prune must leave them running.
        placed.keep |= {f"{kind}/{version_service(name, stable.version)}" for kind in VERSION_KINDS}
        canary = current.one(name, Track.CANARY)
        if stable.version == v.version or (canary is not None and canary.version == v.version):
            if canary is not None:
                placed.keep |= {f"{kind}/{version_service(name, canary.version)}" for kind in VERSION_KINDS}
                _as_canary(objects, version_service(name, canary.version))
            continue  # already running as it is: its routing stays as the cluster has it
        if canary is not None:
            raise Conflict(
                f"{name}@{canary.version} is still a candidate in the cluster (its rollout decides it); "
                f"{name}@{v.version} can follow once it ended",
                hint=f"watch its record: kubectl -n {namespace} get configmap {ROLLOUTS_CONFIGMAP} -o yaml",
            )
        _as_canary(objects, version_service(name, v.version))
        new_cluster = next(c for c in rendered.state.clusters if c.name == cluster_name(name, v.version))
        candidates.append((name, v.version, new_cluster))
        services[name] = (*current.services[name], deployed(v.spec, v.version, Track.CANARY, 0))
        placed.said.append(
            f"{name}: {v.version} placed beside stable {stable.version} at 0%; the controller rolls it out"
        )
    if not from_cluster:
        return placed
    state = _merge(rendered.state, current.state, from_cluster)
    for name, version, cluster in candidates:
        state = _with_candidate(state, name, version, cluster)
    objects[cm_index]["data"] = to_data(ClusterRouting(state, services))
    return placed
