"""The CLI against a real daemon: what users see, the hints it prints, and what no input can break."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import httpx
import pytest

from tests import loopback
from tests.conftest import wait_until
from tests.daemon_helpers import SHIPLOOP, Project, create_project, take_down


def start_project(root: Path) -> Project:
    p = create_project(root)
    p.add_service("echo", "/echo/")
    return p


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    p = start_project(tmp_path_factory.mktemp("cli") / "proj")
    p.cli("up", "--detach", "--port", "0")  # a free port, picked for us
    p.url = p.status()["gateway"]
    try:
        yield p
    finally:
        take_down(p)


class Spawned:
    """A CLI process in the background whose stdout lines are collected as they come."""

    def __init__(self, p: Project, *args: str) -> None:
        self.proc = subprocess.Popen(
            [*SHIPLOOP, *args], cwd=p.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=dict(os.environ, COLUMNS="200"),
        )  # fmt: skip
        self.lines: list[str] = []
        self.err_lines: list[str] = []
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.lines), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.err_lines), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: IO[str], into: list[str]) -> None:
        for line in stream:
            into.append(line.rstrip("\n"))

    def output(self) -> str:
        return "\n".join(self.lines)

    def interrupt(self) -> tuple[int, str, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=15)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        for reader in self._readers:
            reader.join(5)
        return self.proc.returncode, self.output(), "\n".join(self.err_lines)


def api_request(p: Project, raw: bytes) -> tuple[int, dict[str, str]]:
    port = p.daemon_info()["api_port"]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(raw.replace(b"Host: x\r\n", f"Host: 127.0.0.1:{port}\r\n".encode()))  # past the Host check
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


HEAVY = ("fastapi", "uvicorn", "httpx", "shiploop.server", "shiploop.rollout", "shiploop.daemon", "shiploop.spec")


def imported_by(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_the_cli_imports_neither_fastapi_nor_the_server():
    full = imported_by("import shiploop.cli.main")
    assert not [m for m in full if m.startswith(HEAVY)]
    fast = imported_by("import shiploop.cli.entry, shiploop.cli.status_fast")
    heavy = [m for m in fast if m.startswith((*HEAVY, "typer", "pydantic", "rich", "psutil"))]
    assert not heavy, f"the status fast path must not load typer, pydantic, rich or psutil: {heavy[:5]}"


@pytest.mark.slow  # over 4 s alone: with `make test`, not `make test-fast`
def test_up_port_0_serves_on_a_free_port(project: Project):
    port = int(project.url.rsplit(":", 1)[1])
    assert port > 0
    r = loopback.get(f"{project.url}/echo/x")
    assert r.status_code == 200


@pytest.mark.slow  # over 4 s alone: with `make test`, not `make test-fast`
def test_status_shows_where_everything_is_and_never_cuts_ids(project: Project):
    stable = project.versions("echo")["stable"]["id"]
    for columns in ("80", "40"):
        r = subprocess.run(
            [*SHIPLOOP, "status"], cwd=project.root, capture_output=True, text=True, check=True,
            env=dict(os.environ, COLUMNS=columns),
        )  # fmt: skip
        assert stable in r.stdout, r.stdout
        flat = re.sub(r"\s+", "", r.stdout)
        assert "api" in r.stdout and f"http://127.0.0.1:{project.daemon_info()['api_port']}" in flat
        assert "envoyadmin" in flat and str(project.root / ".shiploop" / "logs") in flat, r.stdout
    data = project.status()
    assert data["api"] and data["envoy_admin"] and data["state_dir"].endswith(".shiploop")


def test_garbage_at_the_api_gets_a_clean_4xx_and_the_daemon_lives_on(project: Project):
    status, body = api_request(project, b"GET /v1/events?limit=999999999999999999999 HTTP/1.1\r\nHost: x\r\n"
                                        b"Connection: close\r\n\r\n")  # fmt: skip
    assert status == 422 and body["kind"] == "Invalid"
    status, body = api_request(
        project,
        b"POST /v1/services/echo/rollback HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xc3\xa9t\xc3\xa9\r\n"
        b"Content-Length: 0\r\nConnection: close\r\n\r\n",
    )
    assert status == 401 and body["kind"] == "Unauthorized"
    r = project.cli("route", "echo", "--remove-header", "=a", check=False)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "no header name" in r.stderr
    assert project.status()["services"][0]["name"] == "echo"  # still answering


def test_a_failed_deploy_prints_a_logs_hint_that_works(project: Project):
    svc = project.root / "echo" / "service.yaml"
    good = svc.read_text()
    svc.write_text(good.replace("command: [python, app.py]", "command: [python, -c, 'print(\"boom\"); exit(3)']"))
    try:
        r = project.cli("deploy", "echo", check=False)
    finally:
        svc.write_text(good)
    assert r.returncode == 2, r.stderr
    hint = re.search(r"shiploop (logs echo --version [0-9a-f]+)", r.stderr)
    assert hint, r.stderr
    logs = project.cli(*hint.group(1).split())
    assert "boom" in logs.stdout


@pytest.mark.slow  # over 2.5 s alone: with `make test`, not `make test-fast`
def test_logs_n_0_prints_nothing_and_follow_sees_new_replicas(project: Project):
    assert project.cli("logs", "echo", "-n", "0").stdout == ""
    follower = Spawned(project, "logs", "echo", "-f", "-n", "0")
    try:
        wait_until(lambda: any("following" in ln for ln in follower.err_lines), 30, what="the follower to start")
        project.set_env("echo", {"GREETING": "followed"})
        canary = json.loads(project.cli("deploy", "echo", "--json").stdout)["version"]
        wait_until(lambda: f"echo@{canary} listening on" in follower.output(), 10, what="the new replica's line")
    finally:
        code, out, _ = follower.interrupt()
    assert code == 0
    lines = [ln for ln in out.splitlines() if canary in ln]
    assert any("listening on" in ln for ln in lines), out
    # Each line: time, replica, then the text.
    assert all(re.match(rf"\d\d:\d\d:\d\d\.\d{{3}} {canary}#\d \| ", ln) for ln in lines), lines
    project.cli("rollback", "echo")


@pytest.mark.slow  # 20-50 s: with `make test`, not `make test-fast`
def test_events_show_the_timeline_with_evidence_and_follow(project: Project):
    # A past of its own, whichever tests ran before it on this worker.
    project.cli("route", "echo", "--header", "x-user=bo", "--to", "stable")
    project.cli("route", "echo", "--remove-header", "x-user")
    rows = [json.loads(ln) for ln in project.cli("events", "echo", "--json").stdout.splitlines()]
    assert rows and all({"id", "ts", "kind", "message", "evidence"} <= row.keys() for row in rows)
    assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)
    follower = Spawned(project, "events", "echo", "-f", "-n", "1")
    try:
        # The last past event printed: the follower knows where the past ends.
        wait_until(lambda: follower.lines, 30, what="the follower to start")
        project.cli("route", "echo", "--header", "x-user=ana", "--to", "stable")
        wait_until(lambda: "header-route: x-user: ana" in follower.output(), 10, what="the follower to print the event")
    finally:
        code, out, _ = follower.interrupt()
        project.cli("route", "echo", "--remove-header", "x-user")
    assert code == 0 and "header-route: x-user: ana" in out, out


@pytest.mark.slow  # over 4 s alone: with `make test`, not `make test-fast`
def test_ctrl_c_on_rollout_wait_says_the_rollout_goes_on(project: Project):
    project.set_env("echo", {"GREETING": "rolled"})
    watcher = Spawned(project, "rollout", "echo", "--wait")

    def rollout_state() -> str | None:
        # What `shiploop rollout status echo --json` prints, from the API: polled through the
        # CLI this cost two processes every 0.3 s (tests/integration/test_cli.py's hints run it).
        try:
            return str(project.api_get("/v1/services/echo/rollout")["state"])
        except httpx.HTTPStatusError as e:
            if e.response.status_code == 404:  # no rollout yet
                return None
            raise

    try:
        wait_until(lambda: rollout_state() == "progressing", 60, interval=0.3, what="the rollout to progress")
        # Watching, not still starting it: the watcher prints the rollout's events as it follows it
        # (a Ctrl-C while the CLI reads the POST's answer exits 130 without the message).
        wait_until(lambda: any("started" in ln for ln in watcher.lines), 30, what="the watcher to follow the rollout")
        code, _, err = watcher.interrupt()
        assert code == 130
        assert "goes on" in err and "shiploop rollout status echo --wait" in err and "Traceback" not in err
        assert rollout_state() == "progressing"
    finally:
        watcher.interrupt()
        project.cli("rollout", "abort", "echo", check=False)


@pytest.mark.slow  # 20-50 s: with `make test`, not `make test-fast`
def test_logs_and_events_read_from_disk_with_the_daemon_down(tmp_path: Path):
    p = start_project(tmp_path / "down")
    try:
        p.cli("up", "--detach", "--port", str(p.port))
        stable = p.versions("echo")["stable"]["id"]
    finally:
        take_down(p)
    out = p.cli("logs", "echo", "--version", stable[:6]).stdout
    assert f"echo@{stable} listening on" in out
    timeline = p.cli("events", "--json").stdout.splitlines()
    assert [json.loads(ln)["kind"] for ln in timeline][-1] == "down"  # from the store, daemon down
    r = p.cli("logs", "echo", "--version", "nosuch", check=False)
    assert r.returncode == 2 and "no version matching 'nosuch'" in r.stderr


@pytest.mark.slow  # over 4 s alone: with `make test`, not `make test-fast`
def test_the_readme_path_init_anywhere_then_hello_without_a_slash(tmp_path: Path):
    # README: `shiploop init ~/demo` outside the checkout, `up`, then curl /hello (no slash) reaches the service.
    p = Project(tmp_path / "demo")
    init = subprocess.run([*SHIPLOOP, "init", str(p.root)], capture_output=True, text=True, cwd=tmp_path)
    assert init.returncode == 0, init.stderr
    assert f"cd {p.root} && shiploop up --detach" in init.stdout.replace("\n", "")
    try:
        p.cli("up", "--detach", "--port", str(p.port))
        for path in ("/hello", "/hello/", "/hello/x"):
            r = loopback.get(f"{p.url}{path}")
            assert r.status_code == 200 and r.text.startswith("hello from "), (path, r.status_code, r.text)
    finally:
        take_down(p)


def test_status_watch_redraws_until_ctrl_c(project: Project):
    watcher = Spawned(project, "status", "--watch", "--json")
    try:
        wait_until(lambda: len(watcher.lines) >= 2, 15, interval=0.1, what="two frames")
    finally:
        code, out, err = watcher.interrupt()
    assert code == 0 and "Traceback" not in err
    frames = [json.loads(line) for line in out.splitlines()]
    assert len(frames) >= 2 and all(f["services"][0]["name"] == "echo" for f in frames)


READ_ONLY = {"status", "logs", "versions", "events", "history"}


@pytest.mark.slow  # over 4 s alone: with `make test`, not `make test-fast`
def test_every_read_only_hint_works_against_a_real_daemon(project: Project):
    from tests.unit.test_cli import collect_hints

    stable = project.versions("echo")["stable"]["id"]
    # 36 hints are 8 distinct command lines: each runs once (a CLI process costs ~1 s of CPU
    # under load), and a failure names every place that prints it.
    where_of: dict[tuple[str, ...], list[str]] = {}
    for where, hint in collect_hints():
        args = hint.split(" && ")[0].replace("web", "echo").replace("3f9c2a1b7d04", stable).split()
        if args[0] not in READ_ONLY and args[:2] != ["rollout", "status"]:
            continue  # changes state; parsed by tests/unit/test_cli.py
        where_of.setdefault(tuple(args), []).append(where)
    ran = []
    for args, where in where_of.items():
        r = project.cli(*args, check=False)
        if args[:2] == ("rollout", "status"):
            # Exit codes of a rollout's outcome with --wait (0, 3, 4), or none to show yet.
            assert r.returncode in (0, 3, 4) or "no rollout yet" in r.stderr, (where, r)
        else:
            assert r.returncode == 0, (where, r)
        ran.append(" ".join(args))
    assert "status" in ran and any(a.startswith("logs echo --version") for a in ran), ran
