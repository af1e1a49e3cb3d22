"""`shiploop build` against the real parts: Debian's buildah (vfs storage) and docker-registry on 127.0.0.1.

No base image can be pulled here, so the service is an image FROM scratch around
Debian's static busybox serving HTTP (`busybox httpd`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from shiploop.images.registry import MANIFEST_TYPES
from shiploop.procs import free_port, terminate_group
from tests.conftest import wait_until

BUSYBOX = shutil.which("busybox")
MISSING = [name for name in ("buildah", "docker-registry", "busybox") if shutil.which(name) is None]
pytestmark = pytest.mark.skipif(
    bool(MISSING),
    reason=f"needs {', '.join(MISSING)} (Debian: buildah docker-registry busybox-static; make test installs them)",
)

DOCKERFILE = """\
FROM scratch
COPY busybox /bin/busybox
COPY www /www
USER 65532:65532
ENTRYPOINT ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]
"""


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real registry (HTTP API v2) on a free port of 127.0.0.1, storage in a temporary directory."""
    root = tmp_path_factory.mktemp("registry")
    port = free_port()
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\n"
        f"storage: {{filesystem: {{rootdirectory: {root / 'data'}}}}}\n"
        f"http: {{addr: '127.0.0.1:{port}'}}\n"
        "log: {level: warn}\n"
    )
    log = open(root / "registry.log", "wb")
    proc = subprocess.Popen(
        ["docker-registry", "serve", str(config)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )

    def answers() -> bool:
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=0.5).status == 200
        except OSError:
            return False

    try:
        wait_until(answers, 10, what="docker-registry answering /v2/")
        yield f"127.0.0.1:{port}/shop"
    finally:
        terminate_group(proc.pid, 3)
        proc.wait(timeout=5)
        log.close()


@pytest.fixture
def box(tmp_path: Path) -> Path:
    """A project with one service `box`: busybox httpd in an image FROM scratch."""
    (tmp_path / "shiploop.yaml").write_text("name: boxes\n")
    svc = tmp_path / "box"
    (svc / "www").mkdir(parents=True)
    (svc / "service.yaml").write_text(
        'name: box\nrun: {command: ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]}\n'
        "health: {path: /index.html}\n"
    )
    (svc / "www" / "index.html").write_text("box v1\n")
    (svc / "Dockerfile").write_text(DOCKERFILE)
    assert BUSYBOX is not None
    shutil.copy(BUSYBOX, svc / "busybox")
    return tmp_path


def shiploop(project: Path, *args: str, storage: Path) -> tuple[float, str]:
    env = dict(os.environ, SHIPLOOP_BUILDAH_ROOT=str(storage), SHIPLOOP_BUILDER="buildah")
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "shiploop.cli", *args], cwd=project, env=env, capture_output=True, text=True, timeout=120
    )
    seconds = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    return seconds, done.stdout


def manifest(registry: str, service: str, tag: str) -> dict[str, object]:
    host, _, prefix = registry.partition("/")
    request = urllib.request.Request(
        f"http://{host}/v2/{prefix}/{service}/manifests/{tag}", headers={"Accept": MANIFEST_TYPES}
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        return json.loads(answer.read())


@pytest.mark.slow  # over 4 s alone: with `make test`, not `make test-fast`
def test_first_build_pushes_second_skips_a_change_gives_a_new_tag(box: Path, registry: str, tmp_path: Path):
    storage = tmp_path / "buildah"
    _, out = shiploop(box, "build", "box", "--push", "--registry", registry, storage=storage)
    assert "building" in out and "with buildah" in out, out
    ref = out.strip().splitlines()[-1].split()[-3]  # "built and pushed REF in N.Ns"
    assert out.strip().splitlines()[-1].startswith("built and pushed"), out
    tag = ref.rsplit(":", 1)[1]
    # The registry holds it, with the layers buildah built (busybox and the page).
    pushed = manifest(registry, "box", tag)
    assert pushed["layers"] or pushed.get("manifests"), pushed

    # Same content: the registry's HEAD says it is there, nothing is built or pushed, in < 1 s
    # (as build reports it: from loading the project to the answer, the interpreter's start-up aside).
    _, again = shiploop(box, "build", "box", "--push", "--registry", registry, storage=storage)
    assert "nothing to build or push" in again and tag in again, again
    assert "building" not in again
    took = float(again.strip().splitlines()[-1].rsplit("(", 1)[1].rstrip("s)"))
    assert took < 1.0, again

    # One changed file, a new version, a new tag, pushed beside the old one.
    (box / "box" / "www" / "index.html").write_text("box v2\n")
    _, changed = shiploop(box, "build", "box", "--push", "--registry", registry, storage=storage)
    new_tag = changed.strip().splitlines()[-1].split()[-3].rsplit(":", 1)[1]
    assert new_tag != tag and "built and pushed" in changed
    assert manifest(registry, "box", new_tag)
    assert manifest(registry, "box", tag)  # the old one stays
