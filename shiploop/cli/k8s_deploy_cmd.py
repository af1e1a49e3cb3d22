"""`shiploop deploy --target kubernetes`: apply the rendered manifests to a cluster and wait for them."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from shiploop.paths import find_root

console = Console(highlight=False, soft_wrap=True)


def deploy_to_kubernetes(profile: str | None, context: str | None, namespace: str | None, timeout_s: float) -> None:
    from shiploop.k8s.deploy import connect, deploy
    from shiploop.k8s.render import render
    from shiploop.spec import load_project

    project = load_project(find_root(Path.cwd()))
    rendered = render(project, profile, "kubernetes", namespace)
    client = connect(context, rendered.namespace)
    result = deploy(client, rendered.objects, rendered.namespace, project.name, timeout_s=timeout_s, say=console.print)
    console.print(f"deployed: {len(result.applied)} objects applied, {len(result.ready)} Deployments ready")
