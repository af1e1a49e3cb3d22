"""`shiploop build`: container images of the services' current code."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from shiploop.cli.consoles import LazyConsole
from shiploop.paths import find_root

console = LazyConsole(highlight=False, soft_wrap=True)


def build(
    service: Annotated[str, typer.Argument(metavar="SERVICE", help="the service's name, as in its service.yaml")],
    push: Annotated[bool, typer.Option("--push", help="push to the registry (skipped when it has the tag)")] = False,
    registry: Annotated[
        str | None, typer.Option("--registry", help="HOST[:PORT][/PATH]; default: registry: in shiploop.yaml")
    ] = None,
    builder: Annotated[
        str | None, typer.Option("--builder", help="docker, podman or buildah; default: the first that works")
    ] = None,
) -> None:
    """Build an OCI image of the service's current code, tagged by content; with --push, push it."""
    from shiploop.images.build import build_service
    from shiploop.spec import load_project

    project = load_project(find_root(Path.cwd()))
    result = build_service(project, service, push=push, registry_name=registry, builder_name=builder, say=console.print)
    if result.built:
        done = "built and pushed" if result.pushed else "built"
        console.print(f"{done} {result.plan.ref} in {result.seconds:.1f}s")
