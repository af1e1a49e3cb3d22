"""`shiploop build`: one OCI image per version, tagged by content, pushed unless the registry has it."""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from shiploop.errors import Invalid, NotFound, Unavailable
from shiploop.images.builders import Builder, find_builder
from shiploop.images.dockerfile import Dockerfile, dockerfile_for
from shiploop.images.registry import Registry
from shiploop.images.tag import image_ref, image_tag
from shiploop.paths import ProjectPaths
from shiploop.spec import ProjectSpec, ServiceSpec
from shiploop.versions import snapshot
from shiploop.versions.snapshot import Version, content_id, list_files

LOCAL_REGISTRY = "localhost/shiploop"  # the name of images built without a registry


@dataclass(frozen=True)
class ImagePlan:
    """What would be built for a service's current files, computed without building."""

    service: str
    version: Version
    dockerfile: Dockerfile
    tag: str
    ref: str


@dataclass(frozen=True)
class BuildResult:
    plan: ImagePlan
    builder: str | None  # None when nothing was built
    built: bool
    pushed: bool
    seconds: float
    log: Path | None


def service_of(project: ProjectSpec, name: str) -> ServiceSpec:
    spec = project.services.get(name)
    if spec is None:
        known = ", ".join(sorted(project.services)) or "none"
        raise NotFound(f"no service {name!r} in {project.root} (services: {known})", hint="see: shiploop status")
    return spec


def registry_of(project: ProjectSpec, given: str | None) -> Registry | None:
    text = given or project.registry
    return Registry.parse(text) if text else None


def plan_image(project: ProjectSpec, spec: ServiceSpec, registry: Registry | None) -> ImagePlan:
    version = snapshot(spec.name, spec.directory, ProjectPaths(project.root).versions)
    dockerfile = dockerfile_for(spec, version.path)
    tag = image_tag(version.id, dockerfile.text, dict(spec.build.args))
    ref = image_ref(registry.name if registry else LOCAL_REGISTRY, spec.name, tag)
    return ImagePlan(spec.name, version, dockerfile, tag, ref)


def current_image(spec: ServiceSpec, registry: Registry | None) -> tuple[str, str]:
    """(version id, image ref) of the service's files as they are, read only (no snapshot is written):
    what `shiploop build` would build and push."""
    version = content_id(spec.directory, list_files(spec.directory))
    dockerfile = dockerfile_for(spec, spec.directory)
    tag = image_tag(version, dockerfile.text, dict(spec.build.args))
    return version, image_ref(registry.name if registry else LOCAL_REGISTRY, spec.name, tag)


def _run(cmd: list[str], log: Path, what: str) -> None:
    with open(log, "ab") as out:
        out.write(("$ " + " ".join(cmd) + "\n").encode())
        out.flush()
        done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
        last = lines[-1].strip() if lines else "no output"
        raise Unavailable(f"{what} failed (exit {done.returncode}): {last}", hint=f"see the whole output: cat {log}")


def build_service(
    project: ProjectSpec,
    service: str,
    *,
    push: bool,
    registry_name: str | None = None,
    builder_name: str | None = None,
    say: Callable[[str], None] = lambda _: None,
) -> BuildResult:
    started = time.monotonic()
    spec = service_of(project, service)
    registry = registry_of(project, registry_name)
    if push and registry is None:
        raise Invalid(
            "--push needs a registry",
            hint=f"shiploop build {service} --push --registry HOST[:PORT][/PATH], or set registry: in shiploop.yaml",
        )
    plan = plan_image(project, spec, registry)
    if push and registry is not None and registry.has_tag(service, plan.tag):
        say(f"{plan.ref} is in the registry already: nothing to build or push ({time.monotonic() - started:.2f}s)")
        return BuildResult(plan, None, False, False, time.monotonic() - started, None)
    builder: Builder = find_builder(builder_name)
    logs = ProjectPaths(project.root).logs
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"build-{service}.log"
    log.write_text("")
    say(f"building {plan.ref} with {builder.name}" + (f" ({builder.note})" if builder.note else ""))
    with tempfile.TemporaryDirectory(prefix="shiploop-build-") as tmp:
        # The context is the version's snapshot: exactly the files the tag names.
        file = plan.dockerfile.path
        if file is None:
            file = Path(tmp) / "Dockerfile"
            file.write_text(plan.dockerfile.text)
        _run(builder.build_command(plan.version.path, file, plan.ref, dict(spec.build.args)), log, "build")
    pushed = False
    if push and registry is not None:
        say(f"pushing {plan.ref}")
        _run(builder.push_command(plan.ref, registry.insecure), log, "push")
        pushed = True
    return BuildResult(plan, builder.name, True, pushed, time.monotonic() - started, log)
