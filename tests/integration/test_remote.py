"""The daemon on a shared host, the developer on another (issue 11, remote): two network namespaces.

The shared host's namespace runs the daemon (`up --listen`) and Envoy; the
developer's runs the CLI (SHIPLOOP_URL, a token, the certificate) and the
developer's own process. The two reach each other only over the veth pair, and
the developer's machine has nothing listening that the shared host could
reach: the intercepted requests come through the CLI's outbound tunnel. One
namespace pair, one daemon and one tunnelled intercept serve the module.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests import loopback
from tests.conftest import APPS, wait_until
from tests.daemon_helpers import SHIPLOOP, Project, create_project
from tests.netns import Hosts, Unsupported

API_PORT = 7443

# Two network namespaces, a shared host and a developer: 45 s for the module, with `make test`,
# not `make test-fast`.
pytestmark = pytest.mark.slow


@dataclass
class Shared:
    hosts: Hosts
    project: Project
    env: dict[str, str]  # the developer's: SHIPLOOP_URL, SHIPLOOP_TOKEN, SHIPLOOP_CA
    gateway: str  # as the developer reaches it
    dev_dir: Path  # the developer's working directory (not a project)

    def cli(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """The developer's CLI, in the developer's namespace."""
        return subprocess.run(
            [*self.hosts.exec(self.hosts.dev), *SHIPLOOP, *args],
            cwd=self.dev_dir,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "COLUMNS": "200", **self.env, **(env or {})},
        )

    def host_cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The shared host's own CLI, there."""
        return subprocess.run(
            [*self.hosts.exec(self.hosts.shared), *SHIPLOOP, *args],
            cwd=self.project.root,
            capture_output=True,
            text=True,
            timeout=120,
            env=dict(os.environ, COLUMNS="200"),
        )

    def get(self, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
        """A request to the shared host's gateway, from the developer's machine."""
        return self.hosts.call(
            self.hosts.dev, lambda: loopback.get(self.gateway + path, headers=headers or {}, timeout=10)
        )


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shared]:
    try:
        hosts = Hosts.create()
    except Unsupported as e:
        pytest.skip(f"two hosts need two network namespaces: {e}")
    base = tmp_path_factory.mktemp("remote")
    project = create_project(base / "proj")
    project.add_service("web", "/web/")
    dev_dir = base / "laptop"
    dev_dir.mkdir()
    s = Shared(hosts, project, {}, "", dev_dir)
    procs: list[tuple[int, int]] = []
    try:
        up = s.host_cli("up", "--detach", "--port", "0", "--listen", f"{hosts.shared_ip}:{API_PORT}")
        assert up.returncode == 0, up.stderr + up.stdout
        assert f"shared on https://{hosts.shared_ip}:{API_PORT}" in up.stdout
        procs = project.recorded_processes()
        made = s.host_cli("token", "create", "ana")
        assert made.returncode == 0, made.stderr
        token = made.stdout.splitlines()[1].strip()
        cert = json.loads((project.root / ".shiploop" / "daemon.json").read_text())["remote"]["cert"]
        s.env = {"SHIPLOOP_URL": f"https://{hosts.shared_ip}:{API_PORT}", "SHIPLOOP_TOKEN": token, "SHIPLOOP_CA": cert}
        port = hosts.call(hosts.shared, project.status)["gateway"].rsplit(":", 1)[1]
        s.gateway = f"http://{hosts.shared_ip}:{port}"
        yield s
    finally:
        s.host_cli("down")
        hosts.remove()
        assert project.running(procs) == [], "down left processes behind"


@dataclass
class DevApp:
    proc: subprocess.Popen[bytes]
    port: int
    release: Path


@pytest.fixture(scope="module")
def dev_app(shared: Shared) -> Iterator[DevApp]:
    """The developer's own process, on the developer's machine's loopback only."""
    port = 18080
    release = shared.dev_dir / "release"
    proc = subprocess.Popen(
        [*shared.hosts.exec(shared.hosts.dev), "python3", str(APPS / "dev_app.py"), str(port), str(release)]
    )
    try:
        wait_until(lambda: _answers(shared, port), 10, what="the developer's process")
        yield DevApp(proc, port, release)
    finally:
        proc.kill()
        proc.wait()


def _answers(shared: Shared, port: int) -> bool:
    try:
        return (
            shared.hosts.call(shared.hosts.dev, lambda: loopback.get(f"http://127.0.0.1:{port}/", timeout=1)).text
            == "dev app"
        )
    except httpx.HTTPError:
        return False


class Intercepting:
    """`shiploop intercept web -H x-dev=VALUE -p PORT` (or another command) on the developer's machine."""

    def __init__(self, shared: Shared, value: str, port: int, *command: str, cwd: Path | None = None) -> None:
        args = command or ("intercept", "web", "-H", f"x-dev={value}", "-p", str(port))
        self.proc = subprocess.Popen(
            [*shared.hosts.exec(shared.hosts.dev), *SHIPLOOP, *args],
            cwd=cwd or shared.dev_dir,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=dict(os.environ, COLUMNS="200", **shared.env),
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)


@pytest.fixture(scope="module")
def tunnelled(shared: Shared, dev_app: DevApp) -> Iterator[Intercepting]:
    c = Intercepting(shared, "ana", dev_app.port)
    try:
        wait_until(lambda: shared.get("/web/", {"x-dev": "ana"}).text == "dev app", 30, what=f"ana's route: {c.lines}")
        yield c
    finally:
        c.stop()


def stable_answer(shared: Shared) -> str:
    return str(shared.get("/web/").text)


def test_status_over_tls_with_a_token(shared: Shared) -> None:
    done = shared.cli("status", "--json")
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert [s["name"] for s in status["services"]] == ["web"]
    assert status["gateway"] == shared.gateway  # the shared host's gateway as this machine reaches it


def test_a_bad_token_is_refused_in_one_line(shared: Shared) -> None:
    done = shared.cli("status", env={"SHIPLOOP_TOKEN": "slt_" + secrets.token_urlsafe(8)})
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1 and "refused the token" in done.stderr, done.stderr
    assert "shiploop token create" in done.stderr


def test_requests_with_the_header_reach_the_developers_process_through_the_tunnel(
    shared: Shared, tunnelled: Intercepting
) -> None:
    assert shared.get("/web/", {"x-dev": "ana"}).text == "dev app"
    assert shared.get("/web/", {"x-dev": "someone-else"}).text != "dev app"
    assert stable_answer(shared) != "dev app"
    done = shared.cli("intercepts", "--json")
    mine = [i for i in json.loads(done.stdout) if i["value"] == "ana"]
    assert [i["owner"] for i in mine] == ["ana"]  # the token's name, not the laptop's user


def test_a_1mb_body_passes_both_ways(shared: Shared, tunnelled: Intercepting) -> None:
    body = os.urandom(1 << 20)

    def post() -> httpx.Response:
        return loopback.post(shared.gateway + "/web/upload", content=body, headers={"x-dev": "ana"}, timeout=30)

    r = shared.hosts.call(shared.hosts.dev, post)
    assert r.status_code == 200
    assert len(r.content) == len(body) and r.content == body


def test_a_streamed_response_is_not_buffered(shared: Shared, tunnelled: Intercepting, dev_app: DevApp) -> None:
    def stream() -> list[bytes]:
        got = []
        with httpx.stream("GET", shared.gateway + "/web/stream", headers={"x-dev": "ana"}, timeout=30) as r:
            chunks = r.iter_raw()
            got.append(next(chunks))
            # The app sends its last chunk only once this file exists: the first came through before.
            dev_app.release.write_text("go")
            got.extend(chunks)
        return got

    got = shared.hosts.call(shared.hosts.dev, stream)
    assert got[0] == b"first\n"
    assert b"".join(got) == b"first\nlast\n"


def test_kill_9_of_the_cli_removes_the_route_within_10s(shared: Shared, dev_app: DevApp) -> None:
    c = Intercepting(shared, "bo", dev_app.port)
    try:
        wait_until(lambda: shared.get("/web/", {"x-dev": "bo"}).text == "dev app", 30, what=f"bo's route: {c.lines}")
        c.proc.kill()  # SIGKILL: no release of its own; `ip netns exec` exec'd the CLI, so this is its pid
        killed = time.monotonic()
        wait_until(
            lambda: shared.get("/web/", {"x-dev": "bo"}).text != "dev app", 10, interval=0.05, what="bo's route gone"
        )
        assert time.monotonic() - killed <= 10
    finally:
        c.stop()


def test_dev_through_the_tunnel_serves_an_edit_and_the_gateway_url_is_the_shared_hosts(shared: Shared) -> None:
    checkout = shared.dev_dir / "checkout"  # the developer's own copy of the project
    shutil.copytree(shared.project.root, checkout, ignore=shutil.ignore_patterns(".shiploop"))
    app = checkout / "web" / "app.py"
    c = Intercepting(shared, "", 0, "dev", "web", "--as", "cy", cwd=checkout)
    dev = {"x-shiploop-dev": "cy"}
    try:
        wait_until(lambda: any("watching for changes" in ln for ln in c.lines), 30, what=f"dev to start: {c.lines}")
        assert any(f"try: curl -H 'x-shiploop-dev: cy' {shared.gateway}/web/" in ln for ln in c.lines), c.lines
        assert shared.get("/web/", dev).json()["version"] == "dev-cy"
        before = 'VERSION = os.environ.get("SHIPLOOP_VERSION", "dev")'
        app.write_text(app.read_text().replace(before, before + ' + "-edited"'))
        wait_until(lambda: any("saved -> served through the gateway in" in ln for ln in c.lines), 20, what=f"{c.lines}")
        # Served means served: the first answer after the report is the new code's.
        assert shared.get("/web/", dev).json()["version"] == "dev-cy-edited"
    finally:
        c.stop()
