"""`shiploop render`: what would be built and run elsewhere, printed or written, never applied."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from shiploop.errors import Invalid
from shiploop.paths import find_root

TARGETS = ("kubernetes", "gateway-api", "dockerfile")


def render(
    services: Annotated[
        list[str] | None, typer.Argument(metavar="[SERVICE]...", help="with --target dockerfile: these services only")
    ] = None,
    target: Annotated[
        str, typer.Option("--target", help="kubernetes, gateway-api (HTTPRoutes) or dockerfile")
    ] = "kubernetes",
    profile: Annotated[
        str | None, typer.Option("--profile", help="a profile of shiploop.yaml; default: the one naming this branch")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="write one file per object into DIR")] = None,
) -> None:
    """Print the Kubernetes manifests (or HTTPRoutes, or each service's Dockerfile) of the current code."""
    from shiploop.spec import load_project

    if target not in TARGETS:
        raise Invalid(f"unknown target {target!r}", hint="use --target kubernetes, gateway-api or dockerfile")
    project = load_project(find_root(Path.cwd()))
    if target == "dockerfile":
        from shiploop.images.build import service_of
        from shiploop.images.dockerfile import dockerfile_for

        for name in services or sorted(project.services):
            spec = service_of(project, name)
            found = dockerfile_for(spec, spec.directory)
            origin = "generated from service.yaml" if found.generated else str(found.path)
            sys.stdout.write(f"# --- {name}: {origin}\n{found.text}")
        return
    if services:
        raise Invalid("SERVICE names only go with --target dockerfile", hint=f"shiploop render --target {target}")
    from shiploop.k8s.render import render as render_objects
    from shiploop.k8s.render import to_yaml, write

    rendered = render_objects(project, profile, target)
    if out is None:
        sys.stdout.write(to_yaml(rendered.objects))
        return
    written = write(rendered.objects, out)
    which = f"profile {rendered.profile.name} ({rendered.profile.why})" if rendered.profile.name else "no profile"
    print(f"wrote {len(written)} objects to {out} (namespace {rendered.namespace}, {which})")
