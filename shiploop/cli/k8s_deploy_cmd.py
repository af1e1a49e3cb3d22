"""`shiploop deploy --target kubernetes`: apply the rendered manifests to a cluster and wait for them."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from shiploop.paths import find_root

console = Console(highlight=False, soft_wrap=True)


def deploy_to_kubernetes(profile: str | None, context: str | None, namespace: str | None, timeout_s: float) -> None:
    from shiploop.k8s.canary import place
    from shiploop.k8s.deploy import connect, current_routing, deploy
    from shiploop.k8s.render import render
    from shiploop.spec import load_project

    project = load_project(find_root(Path.cwd()))
    rendered = render(project, profile, "kubernetes", namespace)
    client = connect(context, rendered.namespace)
    # A service with a rollout whose stable runs already: its new version goes in beside it at 0%.
    placed = place(rendered.objects, list(rendered.versions), rendered.namespace,
                   current_routing(client, rendered.namespace))  # fmt: skip
    for line in placed.said:
        console.print(line)
    result = deploy(client, placed.objects, rendered.namespace, project.name, timeout_s=timeout_s, keep=placed.keep,
                    say=console.print)  # fmt: skip
    console.print(f"deployed: {len(result.applied)} objects applied, {len(result.ready)} Deployments ready")
