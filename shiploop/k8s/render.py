"""`shiploop render --target kubernetes|gateway-api`: the project as the objects a cluster runs.

Every service's current files are one version (the one `shiploop build`
tags and pushes), stable, with all of its traffic; the desired routing state
starts there and is kept in the cluster as a ConfigMap the gateway's agent
follows (and the controller changes).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import yaml

from shiploop.images.build import LOCAL_REGISTRY, current_image
from shiploop.images.registry import Registry
from shiploop.k8s import gateway_api, manifests, templates
from shiploop.k8s.cluster_routing import ClusterRouting, DeployedVersion, deployed, to_data
from shiploop.k8s.desired import initial_state
from shiploop.k8s.manifests import Obj, VersionInput
from shiploop.k8s.profiles import Chosen, choose, namespace, settings
from shiploop.naming import Track
from shiploop.spec import ProjectSpec

TARGETS = ("kubernetes", "gateway-api")


@dataclass(frozen=True)
class Rendered:
    objects: list[Obj]
    profile: Chosen
    namespace: str
    versions: tuple[VersionInput, ...] = ()  # what was rendered: each service's current version


def _shiploop_version() -> str:
    try:
        return package_version("shiploop")
    except PackageNotFoundError:
        return "0.1.0"


def _versions(project: ProjectSpec, chosen: Chosen) -> list[VersionInput]:
    text = chosen.profile.registry or project.registry
    registry = Registry.parse(text) if text else None
    out = []
    for name in sorted(project.services):
        spec = project.services[name]
        vid, ref = current_image(spec, registry)
        out.append(VersionInput(spec, vid, ref, settings(chosen.profile, spec)))
    return out


def _with_templates(project: str, ns: str, chosen: Chosen, v: VersionInput, objects: list[Obj]) -> list[Obj]:
    files = templates.template_files(v.spec.directory)
    variables: dict[str, Any] = {
        "project": project,
        "namespace": ns,
        "profile": chosen.name or "",
        "service": v.spec.name,
        "version": v.version,
        "name": f"{v.spec.name}-{v.version}",
        "image": v.image,
        "track": v.track,
        "replicas": v.settings.replicas,
        "labels": manifests.version_labels(project, v.spec.name, v.version, v.track),
    }
    for path in files:
        objects = templates.apply(objects, templates.render_file(path, variables), path)
    return objects


def render(
    project: ProjectSpec, profile_name: str | None = None, target: str = "kubernetes", namespace_name: str | None = None
) -> Rendered:
    chosen = choose(project, profile_name)
    profile = chosen.profile
    ns = namespace_name or namespace(project, profile)
    versions = _versions(project, chosen)
    hosts = {v.spec.name: v.settings.host for v in versions if v.settings.host}
    state = initial_state([(v.spec, v.version) for v in versions], ns, hosts)
    objects: list[Obj] = [manifests.namespace_object(project.name, ns)]
    for v in versions:
        objects += _with_templates(project.name, ns, chosen, v, manifests.version_objects(project.name, ns, v))
    if target == "gateway-api":
        labels = manifests.common_labels(project.name, "routing")
        objects += gateway_api.http_routes(state, project.name, ns, manifests.GATEWAY, labels)
        return Rendered(objects, chosen, ns, tuple(versions))
    registry = profile.registry or project.registry or LOCAL_REGISTRY
    shiploop_image = profile.shiploop_image or f"{registry.rstrip('/')}/shiploop:{_shiploop_version()}"
    envoy_image = profile.envoy_image or f"envoyproxy/envoy:{manifests.ENVOY_VERSION}"
    # The controller's view beside the agent's document: every version stable with all of its traffic.
    placed: dict[str, tuple[DeployedVersion, ...]] = {
        v.spec.name: (deployed(v.spec, v.version, Track.STABLE, 100),) for v in versions
    }
    objects.append(manifests.routing_configmap(project.name, ns, to_data(ClusterRouting(state, placed))))
    objects += manifests.gateway_objects(project.name, ns, profile.gateway_replicas, envoy_image, shiploop_image)
    objects += manifests.controller_objects(project.name, ns, shiploop_image, profile.prometheus)
    objects += manifests.network_policies(project.name, ns)
    return Rendered(objects, chosen, ns, tuple(versions))


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True  # the same labels in several places are written out, not as &anchors


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # Multi-line strings (the routing document) as literal blocks, readable in a diff.
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _str)


def to_yaml(objects: list[Obj]) -> str:
    return "".join("---\n" + yaml.dump(o, Dumper=_Dumper, sort_keys=False, width=120) for o in objects)


def file_name(obj: Obj) -> str:
    return f"{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"


def write(objects: list[Obj], out: Path) -> list[Path]:
    """One file per object; `kubectl apply -f DIR` takes the directory whole."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for obj in objects:
        path = out / file_name(obj)
        path.write_text(to_yaml([obj]))
        written.append(path)
    return written
