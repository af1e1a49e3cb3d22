"""Personal routes against a real daemon, Envoy and CLI: `shiploop intercept` and `shiploop dev`.

One project serves every test here (module-scoped): each test uses its own
header values, so they do not see each other's routes.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from shiploop.gateway.admin import EnvoyAdmin
from shiploop.naming import cluster_name
from shiploop.procs import free_port, is_running, process_start_time
from tests import loopback
from tests.conftest import APPS, wait_until
from tests.daemon_helpers import SHIPLOOP, Project, create_project, take_down


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    p = create_project(tmp_path_factory.mktemp("intercepts") / "proj")
    p.add_service("web", "/web/")
    p.cli("up", "--detach", "--port", "0")
    p.url = p.status()["gateway"]
    try:
        yield p
    finally:
        take_down(p)


class Cli:
    """A long-running CLI command (intercept, dev) whose output lines are collected as they come."""

    def __init__(self, p: Project, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [*SHIPLOOP, *args],
            cwd=p.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=dict(os.environ, COLUMNS="200", **(env or {})),
        )
        self.lines: list[str] = []
        assert self.proc.stdout is not None
        self._reader = threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True)
        self._reader.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    def output(self) -> str:
        return "\n".join(self.lines)

    def stop(self, sig: int = signal.SIGINT) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=15)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)
        return self.proc.returncode


@dataclass
class Killed:
    cli: Cli
    at: float  # time.monotonic() of the SIGKILL
    app: tuple[int, int]  # the intercepted command: pid, start time
    gone_at: float | None = None  # when a request with its header was first answered by stable again
    # Held around each poll: a reader of the stable's counters takes it to know which requests were the poller's.
    lock: threading.Lock = field(default_factory=threading.Lock)
    stable_answers: int = 0

    def watch(self, p: Project, stable: str) -> None:
        """Poll the gateway every 50 ms (for up to 15 s) in the background, so the removal is seen when it happens."""

        def poll() -> None:
            while time.monotonic() - self.at < 15:
                try:
                    with self.lock:
                        if answer(p, {"x-user": "dee"}) == stable:
                            self.stable_answers += 1
                            self.gone_at = time.monotonic()
                            return
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)

        self.poller = threading.Thread(target=poll, daemon=True)
        self.poller.start()


@pytest.fixture(scope="module")
def killed(project: Project) -> Iterator[Killed]:
    """An intercepting CLI killed with SIGKILL once its route serves. Module-scoped and asked for by
    the first test too, so the 8 s lease lapses while other tests run instead of being waited out."""
    c = intercept(project, [], "x-user=dee", "dee-laptop")
    try:
        wait_until(lambda: answer(project, {"x-user": "dee"}) == "dee-laptop", 30, what="dee's route")
        found = wait_until(lambda: re.search(r"started \S+ \(pid (\d+)\)", c.output()), 10, what="the command's pid")
        pid = int(found.group(1))
        app = (pid, process_start_time(pid))
        stable = stable_version(project)
        c.proc.kill()  # SIGKILL: no release, no clean-up of its own
        k = Killed(c, time.monotonic(), app)
        k.watch(project, stable)
        yield k
    finally:
        c.stop()


@pytest.fixture
def clis() -> Iterator[list[Cli]]:
    started: list[Cli] = []
    yield started
    for c in started:
        c.stop()


def intercept(p: Project, clis: list[Cli], header: str, version: str, *extra: str) -> Cli:
    """`shiploop intercept web -H header -- python echo_app.py`, the app answering as `version`."""
    c = Cli(
        p,
        "intercept", "web", "-H", header, *extra, "--", sys.executable, str(APPS / "echo_app.py"),
        env={"SHIPLOOP_VERSION": version, "SHIPLOOP_SERVICE": "web"},
    )  # fmt: skip
    clis.append(c)
    return c


def answer(p: Project, headers: dict[str, str] | None = None) -> str:
    """Who answered a request to /web/ through the gateway: the app's version, or the status code."""
    r = loopback.get(f"{p.url}/web/x", headers=headers or {}, timeout=5)
    return str(r.json()["version"]) if r.status_code == 200 else str(r.status_code)


def api(p: Project, path: str) -> Any:
    """The daemon's API read directly: a CLI call costs a second or more of start-up on a busy machine."""
    return loopback.get(f"http://127.0.0.1:{p.daemon_info()['api_port']}{path}", timeout=10).json()


def stable_version(p: Project) -> str:
    web = next(s for s in api(p, "/v1/status")["services"] if s["name"] == "web")
    return str(next(v["id"] for v in web["versions"] if v["track"] == "stable"))


def event_kinds(p: Project) -> list[str]:
    return [f"{e['kind']}: {e['message']}" for e in api(p, "/v1/events?service=web&limit=50")]


def cluster_requests(p: Project, cluster: str) -> int:
    info = p.envoy_info()
    assert info is not None

    async def read() -> int:
        admin = EnvoyAdmin(Path(info["admin_socket"]))
        try:
            name = f"cluster.{cluster}.upstream_rq_total"
            return int((await admin.stats(f"^{re.escape(name)}$")).get(name, 0))
        finally:
            await admin.close()

    return asyncio.run(read())


@pytest.mark.slow  # over 4 s alone: with `make test`, not `make test-fast`
def test_two_developers_at_once_each_see_only_their_own_process_and_the_rollout_evidence_none(project, clis, killed):
    p = project
    stable = stable_version(p)
    ana = intercept(p, clis, "x-user=ana", "ana-laptop")
    intercept(p, clis, "x-user=bo", "bo-laptop")
    wait_until(lambda: answer(p, {"x-user": "ana"}) == "ana-laptop", 20, what="ana's route")
    wait_until(lambda: answer(p, {"x-user": "bo"}) == "bo-laptop", 20, what="bo's route")
    assert "try: curl -H 'x-user: ana' " in ana.output()

    def stable_counts() -> tuple[int, int]:
        # Envoy's count for the stable's cluster, and how many of those the killed CLI's poller sent.
        with killed.lock:
            return cluster_requests(p, cluster_name("web", stable)), killed.stable_answers

    before = stable_counts()
    seen = {who: {answer(p, {"x-user": who}) for _ in range(20)} for who in ("ana", "bo")}
    assert seen == {"ana": {"ana-laptop"}, "bo": {"bo-laptop"}}
    # The rollout judges each version on its own cluster's counters in Envoy: 40 personal
    # requests moved the stable's not at all (only the poller's own request, if it saw dee's route go).
    after = stable_counts()
    assert after[0] - before[0] == after[1] - before[1]
    assert {answer(p) for _ in range(5)} == {stable}  # everyone else: stable
    assert {answer(p, {"x-user": "cy"}) for _ in range(5)} == {stable}

    status = p.status()
    held = {i["value"]: i for i in next(s for s in status["services"] if s["name"] == "web")["intercepts"]}
    assert {"ana", "bo"} <= set(held) and held["ana"]["kind"] == "intercept"  # (dee, killed, until it lapses)
    listed = p.cli("intercepts").stdout
    assert "x-user: ana" in listed and "x-user: bo" in listed

    assert ana.stop() == 0  # Ctrl-C: released at once, not after the lease
    assert "route released" in ana.output()
    assert answer(p, {"x-user": "ana"}) == stable
    assert answer(p, {"x-user": "bo"}) == "bo-laptop"


@pytest.mark.slow  # over 4 s alone: with `make test`, not `make test-fast`
def test_a_second_claim_is_refused_with_owner_and_expiry_and_takeover_works(project, clis):
    p = project
    first = intercept(p, clis, "x-user=eve", "eve-1")
    wait_until(lambda: answer(p, {"x-user": "eve"}) == "eve-1", 20, what="eve's route")
    port = free_port()
    refused = p.cli("intercept", "web", "-H", "x-user=eve", "--port", str(port), check=False, timeout=30)
    assert refused.returncode == 2
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, refused.stderr
    assert re.search(r"x-user=eve is intercepted by \S+ \(pid \d+\) until \d\d:\d\d:\d\d", lines[0])
    assert f"shiploop intercept web -H x-user=eve --port {port} --takeover" in lines[0]

    intercept(p, clis, "x-user=eve", "eve-2", "--takeover")
    wait_until(lambda: answer(p, {"x-user": "eve"}) == "eve-2", 20, what="the takeover")
    # The first owner learns at its next renewal (every 2 s), and ends.
    wait_until(lambda: first.proc.poll() is not None, 10, what="the first owner to exit")
    assert first.proc.returncode != 0 and "taken over" in first.output()
    assert any(e.startswith("intercept-takeover: ") for e in event_kinds(p))
    assert answer(p, {"x-user": "eve"}) == "eve-2"  # the loser's exit released nothing of the winner's


def test_dev_mode_serves_the_working_tree_to_its_header_and_reports_save_to_served(project, clis):
    p = project
    stable = stable_version(p)
    app = p.root / "web" / "app.py"
    original = app.read_text()
    c = Cli(p, "dev", "web", "--as", "tester")
    clis.append(c)
    dev = {"x-shiploop-dev": "tester"}
    try:
        wait_until(lambda: "watching for changes" in c.output(), 30, what=f"dev mode to start: {c.output()}")
        assert "try: curl -H 'x-shiploop-dev: tester' " in c.output()
        assert answer(p, dev) == "dev-tester"
        assert answer(p) == stable

        app.write_text(original.replace('VERSION = os.environ.get("SHIPLOOP_VERSION", "dev")',
                                        'VERSION = os.environ.get("SHIPLOOP_VERSION", "dev") + "-edited"'))  # fmt: skip
        line = wait_until(
            lambda: next((ln for ln in c.lines if "saved -> served through the gateway in" in ln), None),
            20,
            what=f"the edit to be served: {c.output()}",
        )
        assert re.search(r"app\.py: saved -> served through the gateway in \d+ ms", line)
        assert answer(p, dev) == "dev-tester-edited"

        app.write_text(original + "\nthis is not python(\n")  # a broken save: the previous version keeps serving
        wait_until(lambda: "the previous version keeps serving" in c.output(), 20, what="the failure to show")
        assert "SyntaxError" in c.output()
        assert answer(p, dev) == "dev-tester-edited"
    finally:
        app.write_text(original)
    assert c.stop() == 0
    assert re.search(r"1 change\(s\): save -> served p50 \d+ ms, p95 \d+ ms", c.output()), c.output()
    assert answer(p, dev) == stable  # released on exit


@pytest.mark.slow  # over 2.5 s alone: with `make test`, not `make test-fast`
def test_kill_9_of_the_cli_removes_its_route_within_10_s(project, killed):
    p = project
    killed.poller.join(timeout=max(0.0, 16 - (time.monotonic() - killed.at)))
    assert killed.gone_at is not None, "the route of a killed CLI still served 15 s later"
    gone_after = killed.gone_at - killed.at
    assert gone_after <= 10.0, f"the route outlived its CLI by {gone_after:.1f}s"
    wait_until(lambda: not is_running(*killed.app), 5, what="the intercepted command to end with its CLI")
    assert any(e.startswith("intercept-lapsed: x-user=dee") for e in event_kinds(p))
