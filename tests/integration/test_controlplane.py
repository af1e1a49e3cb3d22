"""The control plane in-process: real Envoy, real replicas, real SQLite; each failure leaves nothing behind.

Driving ControlPlane directly (not through the daemon) lets a test shorten the
readiness timeout and bend Envoy's rules, to reach the paths where Envoy itself
refuses or never confirms a change.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shiploop.errors import Conflict, GatewayRejected, GatewayTimeout, Invalid, ShiploopError
from shiploop.gateway import publisher
from shiploop.naming import Track
from shiploop.procs import free_port, is_running, terminate_group
from shiploop.server.controlplane import ControlPlane
from shiploop.spec import envoy_rules
from tests import loopback
from tests.conftest import APPS, wait_until

SERVICE_YAML = "name: echo\nrun:\n  command: {command}\n  env: {env}\nreplicas: 2\nroutes:\n  - prefix: /echo/\n{extra}"


def write_service(root: Path, command: str = "[python, app.py]", env: str = "{}", extra: str = "") -> None:
    svc = root / "echo"
    svc.mkdir(parents=True, exist_ok=True)
    shutil.copy(APPS / "echo_app.py", svc / "app.py")
    (svc / "service.yaml").write_text(SERVICE_YAML.format(command=command, env=env, extra=extra))


class Plane:
    """A started ControlPlane on a temporary project, and what tests look at."""

    def __init__(self, root: Path, loop: asyncio.AbstractEventLoop) -> None:
        self.root = root
        self.loop = loop
        self.port = free_port()
        self.cp = self.new()
        self.progress: list[str] = []

    def new(self) -> ControlPlane:
        cp = ControlPlane(self.root, self.port)
        cp.ctx.ready_timeout_s = 4.0
        return cp

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def start(self) -> None:
        self.progress = []
        self.run(self.cp.start(self.progress.append))

    def tables(self) -> dict[str, list[tuple[Any, ...]]]:
        """Everything of desired state and its records: every table but the event log and the version list."""
        db = sqlite3.connect(self.root / ".shiploop" / "state.db")
        try:
            return {
                "deployments": list(
                    db.execute("SELECT service, version, track, weight, state FROM deployments ORDER BY 1, 2")
                ),
                "replicas": list(db.execute("SELECT * FROM replicas ORDER BY 1, 2, 3")),
                "header_routes": list(db.execute("SELECT * FROM header_routes ORDER BY 1, 2, 3")),
                "kv": list(db.execute("SELECT * FROM kv ORDER BY 1")),
            }
        finally:
            db.close()

    def processes(self) -> list[tuple[str, int | None]]:
        return sorted((f"{r.service}@{r.version}#{r.idx}", r.pid) for r in self.cp.runtime.replicas)

    def files(self) -> dict[str, Any]:
        """The resources of the generation Envoy loads on a restart (without the generation number)."""
        current = self.root / ".shiploop" / "xds" / "current"
        return {name: json.loads((current / name).read_text())["resources"] for name in ("cds.json", "rds.json")}

    def everything(self) -> tuple[Any, ...]:
        return (self.tables(), self.processes(), self.files())

    def served(self, n: int = 20, headers: dict[str, str] | None = None) -> Counter[str]:
        seen: Counter[str] = Counter()
        with loopback.client() as c:
            for _ in range(n):
                r = c.get(f"http://127.0.0.1:{self.port}/echo/x", headers=headers)
                assert r.status_code == 200, r.text
                seen[r.headers["x-shiploop-version"].split("@")[1]] += 1
        return seen

    def envoy_serves_current_generation(self) -> bool:
        admin = self.cp.gateway.admin
        assert admin is not None
        stats = self.run(admin.stats(r"^http\.gateway\.rds\.gateway\.version_text$"))
        current = (self.root / ".shiploop" / "xds" / "current").resolve().name
        return stats.get("http.gateway.rds.gateway.version_text") == str(int(current[4:]))

    def version(self, track: Track) -> str:
        found = self.cp.ctx.find_track("echo", track)
        assert found is not None, f"no {track}"
        return found.version

    def stop(self) -> None:
        self.run(self.cp.shutdown())


@pytest.fixture
def plane(tmp_path: Path, loop: asyncio.AbstractEventLoop) -> Iterator[Plane]:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "shiploop.yaml").write_text("name: cptest\n")
    write_service(root)
    p = Plane(root, loop)
    yield p
    pids = [(r.pid, r.start_time) for r in p.cp.runtime.replicas if r.pid and r.start_time]
    p.run(p.cp.shutdown())
    assert not [x for x in pids if is_running(*x)], "shutdown left replicas behind"


def deploy_canary(p: Plane, greeting: str, weight: int = 20) -> str:
    write_service(p.root, env=json.dumps({"GREETING": greeting}))
    return str(p.run(p.cp.deploy("echo", weight))["version"])


@pytest.mark.parametrize(
    ("command", "env", "message"),
    [
        ("[/nonexistent/bin]", "{}", "cannot start '/nonexistent/bin'"),
        ('[python, -c, "print(\'bad config: no DB\', flush=True); import sys; sys.exit(3)"]', "{}", "no DB"),
        # waits out the readiness deadline: with `make test`, not `make test-fast`
        pytest.param("[python, app.py]", '{"NOT_READY": "1"}', "not healthy on /healthz", marks=pytest.mark.slow),
    ],
    ids=["no-such-binary", "starts-then-crashes", "never-healthy"],
)
def test_failed_deploy_leaves_everything_as_it_was(plane: Plane, command: str, env: str, message: str):
    plane.start()
    stable = plane.version(Track.STABLE)
    canary = deploy_canary(plane, "v2", weight=10)
    before = plane.everything()
    assert plane.served(40).keys() <= {stable, canary}

    write_service(plane.root, command=command, env=env)
    with pytest.raises(ShiploopError) as failed:
        plane.run(plane.cp.deploy("echo", 20))
    assert message in failed.value.line() and "\n" not in failed.value.line()

    # Store, weights, processes, the canary it would have replaced, the files: all as before.
    assert plane.everything() == before
    assert plane.envoy_serves_current_generation()
    assert plane.served(40).keys() <= {stable, canary}
    assert plane.version(Track.CANARY) == canary


def test_promote_refuses_a_version_without_ready_replicas(plane: Plane):
    plane.start()
    stable = plane.version(Track.STABLE)
    canary = deploy_canary(plane, "v2", weight=0)
    for r in plane.cp.runtime.replicas:
        if r.version == canary and r.pid:
            terminate_group(r.pid, 3)
    plane.run(plane.cp.runtime.tick())  # notices the exits; restarts wait for their back-off
    assert plane.cp.runtime.counts("echo", canary) == (0, 2)
    before = plane.tables()
    with pytest.raises(Conflict) as refused:
        plane.run(plane.cp.promote("echo"))
    line = refused.value.line()
    assert "no ready replica (0/2)" in line and "shiploop rollback echo" in line and "\n" not in line
    assert plane.tables() == before and plane.version(Track.STABLE) == stable


def test_a_change_envoy_rejects_changes_nothing_and_says_why(plane: Plane, monkeypatch: pytest.MonkeyPatch):
    plane.start()
    stable = plane.version(Track.STABLE)
    # Let a regex Envoy refuses (RE2 program size over 100) past our own check. The
    # stable version's routes apply, so Envoy first sees it when the canary is promoted.
    monkeypatch.setattr(envoy_rules, "MAX_REGEX_PROGRAM_SIZE", 10**6)
    big = "^/(" + "|".join(f"item{i}[0-9]+x" for i in range(100)) + ")$"
    write_service(plane.root, env='{"GREETING": "v2"}', extra=f"  - regex: '{big}'\n")
    plane.run(plane.cp.deploy("echo", 0))
    before = plane.everything()
    with pytest.raises(GatewayRejected) as rejected:
        plane.run(plane.cp.promote("echo"))
    line = rejected.value.line()
    assert "program size" in line and "\n" not in line
    assert plane.everything() == before
    assert plane.envoy_serves_current_generation()
    assert plane.served(20) == Counter({stable: 20})

    # Not wedged: the next valid changes go through (a rollback even with the bad file in place).
    plane.run(plane.cp.rollback("echo"))
    monkeypatch.undo()
    canary = deploy_canary(plane, "v3", weight=50)
    plane.run(plane.cp.set_weights("echo", {canary: 100}))
    assert plane.served(20) == Counter({canary: 20})


@pytest.mark.slow  # over 2.5 s alone: with `make test`, not `make test-fast`
def test_a_change_envoy_never_confirms_changes_nothing(plane: Plane, monkeypatch: pytest.MonkeyPatch):
    plane.start()
    stable = plane.version(Track.STABLE)
    # A duration past protobuf's range makes Envoy drop the file without counting a rejection.
    monkeypatch.setattr(envoy_rules, "MAX_DURATION_S", 10**12)
    monkeypatch.setattr(publisher, "_ACCEPT_TIMEOUT_S", 2.0)
    write_service(plane.root, env='{"GREETING": "v3"}', extra="    timeout: 315576000001s\n")
    canary = str(plane.run(plane.cp.deploy("echo", 0))["version"])
    before = plane.everything()
    with pytest.raises(GatewayTimeout) as timed_out:
        plane.run(plane.cp.promote("echo"))
    assert "did not apply" in timed_out.value.line()
    assert plane.everything() == before
    assert plane.served(20) == Counter({stable: 20})
    plane.run(plane.cp.set_weights("echo", {canary: 100}))
    assert plane.served(20) == Counter({canary: 20})


@pytest.mark.parametrize(
    ("header", "value"),
    [("", "a"), ("x-user\n", "a"), ("x user", "a"), ("x:user", "a"), ("x-user", "a\r\nx-evil: 1"), ("x-user", "a\0")],
)
def test_header_routes_envoy_would_refuse_are_refused_first(plane: Plane, header: str, value: str):
    plane.start()
    before = plane.everything()
    with pytest.raises(Invalid):
        plane.run(plane.cp.set_header_route("echo", header, value, "stable"))
    assert plane.everything() == before


def test_up_restores_the_last_stable_version_not_the_working_tree(plane: Plane):
    plane.start()
    first = plane.version(Track.STABLE)
    second = deploy_canary(plane, "v2", weight=0)
    plane.run(plane.cp.promote("echo"))
    rejected = deploy_canary(plane, "v3", weight=0)
    plane.run(plane.cp.rollback("echo"))  # the working tree now holds rejected code
    plane.stop()

    plane.cp = plane.new()
    plane.start()
    assert plane.version(Track.STABLE) == second != first
    assert plane.served(10) == Counter({second: 10})
    said = f"echo: working tree differs from stable {second}; ship it with: shiploop rollout echo"
    assert said in plane.progress
    assert said in [e["message"] for e in plane.cp.store.events("echo") if e["kind"] == "working-tree-differs"]
    assert rejected not in {v["id"] for v in plane.cp.status()["services"][0]["versions"]}


def test_status_shows_a_crash_loop(plane: Plane):
    write_service(plane.root, env='{"CRASH_AFTER": "1"}')
    plane.start()
    stable = plane.version(Track.STABLE)
    with loopback.client() as c:
        c.get(f"http://127.0.0.1:{plane.port}/echo/x")
    versions: list[dict[str, Any]] = []

    def crashed() -> bool:
        plane.run(plane.cp.runtime.tick())
        versions[:] = plane.cp.status()["services"][0]["versions"]
        return bool(versions[0]["restarts"])

    wait_until(crashed, 10, interval=0.1, what="the crash to show in status")
    v = versions[0]
    assert v["id"] == stable and v["restarts"] == 1 and v["last_exit_code"] == 3
    assert v["last_log_line"].startswith(f"echo@{stable} listening on")
