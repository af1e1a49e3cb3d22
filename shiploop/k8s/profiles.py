"""Which profile applies (`--profile`, or the git branch), and what it makes of each service."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shiploop.errors import NotFound
from shiploop.spec import ProjectSpec, ServiceSpec
from shiploop.spec.deploy import Profile, Resources


@dataclass(frozen=True)
class Chosen:
    name: str | None  # None: no profile, the defaults
    profile: Profile
    why: str  # "--profile", "branch main", "default"


def git_branch(root: Path) -> str | None:
    """The checked-out branch of the git work tree at or above `root`, read from .git/HEAD (no git needed)."""
    for d in (root.resolve(), *root.resolve().parents):
        head = d / ".git" / "HEAD"
        if head.is_file():
            text = head.read_text().strip()
            return text.removeprefix("ref: refs/heads/") if text.startswith("ref: refs/heads/") else None
        if (d / ".git").is_file():  # a worktree: .git names the real directory
            line = (d / ".git").read_text().strip()
            if line.startswith("gitdir: "):
                head = (d / line.removeprefix("gitdir: ")).resolve() / "HEAD"
                text = head.read_text().strip() if head.is_file() else ""
                return text.removeprefix("ref: refs/heads/") if text.startswith("ref: refs/heads/") else None
    return None


def choose(project: ProjectSpec, name: str | None) -> Chosen:
    if name is not None:
        if name not in project.profiles:
            known = ", ".join(sorted(project.profiles)) or "none"
            raise NotFound(
                f"no profile {name!r} in shiploop.yaml (profiles: {known})",
                hint="add it under profiles: in shiploop.yaml, or leave out --profile",
            )
        return Chosen(name, project.profiles[name], "--profile")
    branch = git_branch(project.root)
    if branch is not None:
        for pname, profile in sorted(project.profiles.items()):
            if branch in profile.branches:
                return Chosen(pname, profile, f"branch {branch}")
    return Chosen(None, Profile(), "default")


@dataclass(frozen=True)
class ServiceSettings:
    replicas: int
    resources: Resources
    env: dict[str, str]
    host: str | None


def settings(profile: Profile, spec: ServiceSpec) -> ServiceSettings:
    own = profile.services.get(spec.name)
    replicas = (own.replicas if own else None) or profile.replicas or spec.replicas
    resources = (own.resources if own else None) or profile.resources
    env = {**spec.run.env, **profile.env, **(own.env if own else {})}
    return ServiceSettings(replicas, resources, env, own.host if own else None)


def namespace(project: ProjectSpec, profile: Profile) -> str:
    return profile.namespace or project.name
