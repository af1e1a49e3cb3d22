"""What another local user or a web page can reach: state files, the API, Envoy's admin."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from shiploop.loadgen import LoadSpec, run_load_sync
from tests import loopback
from tests.conftest import wait_until
from tests.daemon_helpers import Project


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    p = Project(tmp_path_factory.mktemp("security") / "proj")
    p.root.mkdir()
    (p.root / "shiploop.yaml").write_text("name: testproj\n")
    p.add_service("echo", "/echo/")
    # State left by an older shiploop, readable by everyone: up must close it.
    state = p.root / ".shiploop"
    (state / "logs").mkdir(parents=True)
    state.chmod(0o755)
    (state / "logs" / "daemon.log").write_text("old\n")
    (state / "logs" / "daemon.log").chmod(0o644)
    p.cli("up", "--detach", "--port", str(p.port))
    yield p
    procs = p.recorded_processes()
    p.cli("down", check=False)
    assert p.running(procs) == []


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.mark.slow  # over 4 s alone: with `make test`, not `make test-fast`
def test_state_directory_is_0700_and_its_files_0600(project: Project):
    state = project.root / ".shiploop"
    assert mode(state) == 0o700
    for name in ("state.db", "state.db-wal", "state.db-shm", "token", "daemon.json", "daemon.lock"):
        assert mode(state / name) == 0o600, name
    checked = 0
    for tree in ("logs", "xds", "versions"):
        assert mode(state / tree) == 0o700, tree
        for path in (state / tree).rglob("*"):
            if path.is_symlink() or tree == "versions" and not path.is_dir():
                continue  # snapshot files keep their own modes, inside 0700 directories
            want = 0o700 if path.is_dir() else 0o600
            assert mode(path) == want, f"{path} is {oct(mode(path))}"
            checked += 1
    assert checked >= 8
    assert {p.name for p in (state / "logs").rglob("*.log")} >= {"daemon.log", "envoy.log"}


@pytest.mark.parametrize(
    "host, allowed",
    [
        ("127.0.0.1:{port}", True),
        ("localhost:{port}", True),
        ("[::1]:{port}", True),
        ("evil.example:{port}", False),  # DNS rebinding: the page's name, our address
        ("127.0.0.1:{other}", False),
        ("127.0.0.1", False),
        ("localhost.evil.example:{port}", False),
    ],
)
def test_api_answers_only_requests_for_its_own_address(project: Project, host: str, allowed: bool):
    port = project.daemon_info()["api_port"]
    headers = {"Host": host.format(port=port, other=port + 1)}
    base = f"http://127.0.0.1:{port}"
    for method, path in [("GET", "/v1/status"), ("GET", "/v1/events"), ("POST", "/v1/services/echo/promote")]:
        r = loopback.request(method, f"{base}{path}", headers=headers)
        if allowed:
            assert r.status_code != 421, (path, r.text)
        else:
            assert r.status_code == 421, (path, r.status_code)
            assert "is not this daemon's address" in r.json()["error"] and "\n" not in r.json()["error"]


def listening_tcp_ports(pid: int) -> set[int]:
    """TCP ports the process listens on: its socket inodes matched against /proc/net/tcp{,6}."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


@pytest.mark.slow  # over 4 s alone: with `make test`, not `make test-fast`
def test_envoy_admin_is_a_private_socket_and_our_reads_still_work(project: Project):
    recorded = project.envoy_info()
    assert recorded is not None
    # The gateway port and the stats listener are all Envoy offers on TCP: no admin port for other
    # users to stop it with; the stats listener serves GET /metrics and nothing else of the admin API.
    stats_port = recorded["stats_port"]
    assert listening_tcp_ports(recorded["pid"]) == {project.port, stats_port}
    for method, path in (("POST", "/quitquitquit"), ("GET", "/config_dump"), ("GET", "/stats")):
        assert loopback.request(method, f"http://127.0.0.1:{stats_port}{path}").status_code == 404, path
    envoy = project.status()["envoy"]
    socket_path = Path(envoy["admin"])
    assert socket_path.parent == project.root / ".shiploop"
    assert stat.S_ISSOCK(socket_path.lstat().st_mode) and mode(socket_path) == 0o600

    # The daemon's own reads go through the socket: status shows live traffic.
    run_load_sync(LoadSpec(f"{project.url}/echo/x", rps=50, duration_s=2))

    def traffic() -> dict[str, object] | None:
        t = project.versions("echo")["stable"].get("traffic")
        return t if t and t["rps"] > 0 else None

    t = wait_until(traffic, 10, interval=0.3, what="status to show traffic read through the admin socket")
    assert t["source_errors"] == []
