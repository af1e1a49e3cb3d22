"""The image builder on this machine: the first of docker, podman, buildah that can build.

A `docker` client whose daemon does not answer cannot build, so it is passed
over (and said so). buildah runs with the vfs storage driver, which needs no
privileges (no overlay mounts); SHIPLOOP_BUILDAH_ROOT puts its storage in a
directory of your choice (the tests use a temporary one).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from shiploop.errors import Invalid, Unavailable

NAMES = ("docker", "podman", "buildah")
_DOCKER_PROBE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Builder:
    name: str
    executable: str
    global_args: tuple[str, ...] = ()
    note: str = ""  # why an earlier builder was passed over

    def _base(self) -> list[str]:
        return [self.executable, *self.global_args]

    def build_command(self, context: Path, dockerfile: Path, ref: str, args: dict[str, str]) -> list[str]:
        verb = ["bud"] if self.name == "buildah" else ["build"]
        cmd = [*self._base(), *verb, "-f", str(dockerfile), "-t", ref]
        for key in sorted(args):
            cmd += ["--build-arg", f"{key}={args[key]}"]
        return [*cmd, str(context)]

    def push_command(self, ref: str, insecure: bool) -> list[str]:
        if self.name == "docker":
            return [*self._base(), "push", ref]  # docker trusts localhost registries over HTTP by itself
        tls = ["--tls-verify=false"] if insecure else []
        target = [f"docker://{ref}"] if self.name == "buildah" else []
        return [*self._base(), "push", *tls, ref, *target]


def _docker_answers(executable: str) -> bool:
    try:
        done = subprocess.run(
            [executable, "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            timeout=_DOCKER_PROBE_TIMEOUT_S,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _make(name: str, executable: str, note: str) -> Builder:
    if name != "buildah":
        return Builder(name, executable, note=note)
    args = ["--storage-driver", "vfs"]
    root = os.environ.get("SHIPLOOP_BUILDAH_ROOT")
    if root:
        args += ["--root", str(Path(root) / "root"), "--runroot", str(Path(root) / "run")]
    return Builder(name, executable, tuple(args), note)


def find_builder(preferred: str | None = None) -> Builder:
    """`preferred` (--builder or SHIPLOOP_BUILDER) or the first usable of docker, podman, buildah."""
    preferred = preferred or os.environ.get("SHIPLOOP_BUILDER") or None
    if preferred is not None:
        if preferred not in NAMES:
            raise Invalid(f"unknown builder {preferred!r}", hint="use one of: --builder docker|podman|buildah")
        exe = shutil.which(preferred)
        if exe is None:
            raise Unavailable(f"builder {preferred} is not installed", hint=f"sudo apt-get install -y {preferred}")
        return _make(preferred, exe, "")
    notes = []
    for name in NAMES:
        exe = shutil.which(name)
        if exe is None:
            continue
        if name == "docker" and not _docker_answers(exe):
            notes.append("docker is installed but its daemon does not answer")
            continue
        return _make(name, exe, "; ".join(notes))
    raise Unavailable(
        "no image builder found: building images needs docker, podman or buildah"
        + (f" ({'; '.join(notes)})" if notes else ""),
        hint="sudo apt-get install -y buildah",
    )
