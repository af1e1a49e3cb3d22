"""examples/shop run end to end through the real CLI, daemon, Envoy and app processes."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shiploop.procs import free_port, process_start_time
from shiploop.rollout.judge import guardrail_results
from shiploop.rollout.readings import Reading, Stratum
from shiploop.spec import load_project
from tests import loopback
from tests.conftest import wait_until

pytestmark = pytest.mark.slow

SHOP = Path(__file__).resolve().parents[2] / "examples" / "shop"
_SCRIPT = Path(sys.executable).parent / "shiploop"
CLI = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-c", "from shiploop.cli.main import main; main()"]
_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)\{version="([^"]*)"\} (\S+)$', re.MULTILINE)


@dataclass
class Shop:
    root: Path
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str, timeout: float = 90) -> str:
        proc = subprocess.run(
            [*CLI, *args], cwd=self.root, capture_output=True, text=True, timeout=timeout, env=dict(os.environ)
        )
        assert proc.returncode == 0, f"shiploop {' '.join(args)} exited {proc.returncode}: {proc.stderr}{proc.stdout}"
        return proc.stdout

    def status(self) -> dict[str, Any]:
        return dict(json.loads(self.cli("status", "--json")))

    def stable(self, service: str) -> str:
        svc = next(s for s in self.status()["services"] if s["name"] == service)
        return str(next(v["id"] for v in svc["versions"] if v["track"] == "stable"))

    def db(self, query: str) -> list[tuple[Any, ...]]:
        con = sqlite3.connect(f"file:{self.root / '.shiploop' / 'state.db'}?mode=ro", uri=True)
        try:
            return con.execute(query).fetchall()
        finally:
            con.close()

    def replica_ports(self, service: str) -> list[int]:
        return [row[0] for row in self.db(f"SELECT port FROM replicas WHERE service = '{service}'")]


def start_shop(root: Path) -> Iterator[Shop]:
    shutil.copytree(SHOP, root, ignore=shutil.ignore_patterns(".shiploop", "__pycache__"))
    port = free_port()
    for name in ("shiploop.yaml", "web/service.yaml"):  # web calls api through the gateway's port
        path = root / name
        path.write_text(path.read_text().replace("8080", str(port)))
    s = Shop(root, port)
    try:
        s.cli("up", "--detach", "--port", str(port))
        yield s
    finally:
        subprocess.run([*CLI, "down"], cwd=root, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    """One shop for the tests that only read it or count their own requests (an `up` of the
    shop and its `down` cost ~12 s under load): test_down_leaves_no_process has its own."""
    yield from start_shop(tmp_path_factory.mktemp("shop") / "shop")


@pytest.fixture
def own_shop(tmp_path: Path) -> Iterator[Shop]:
    yield from start_shop(tmp_path / "shop")


def metrics(url: str) -> dict[tuple[str, str], float]:
    """{(name, version label): value} of a Prometheus text page."""
    r = loopback.get(url, timeout=5)
    assert r.status_code == 200
    return {(name, version): float(value) for name, version, value in _SAMPLE.findall(r.text)}


def test_both_services_get_ready(shop: Shop) -> None:
    def all_ready() -> bool:
        services = shop.status()["services"]
        return {s["name"] for s in services} == {"web", "api"} and all(
            v["ready"] == v["replicas"] for s in services for v in s["versions"]
        )

    wait_until(all_ready, 30, what="web and api ready")
    replicas = {s["name"]: s["versions"][0]["replicas"] for s in shop.status()["services"]}
    assert replicas == {"web": 1, "api": 2}
    assert loopback.get(f"{shop.url}/healthz", timeout=5).text == "ok"
    assert loopback.get(f"{shop.url}/api/healthz", timeout=5).text == "ok"


def test_signup_goes_web_gateway_api(shop: Shop) -> None:
    web, api = shop.stable("web"), shop.stable("api")
    page = loopback.get(f"{shop.url}/", timeout=5)
    assert page.status_code == 200
    assert '<form method="post" action="/signup">' in page.text
    assert page.headers["x-shiploop-version"] == f"web@{web}"

    r = loopback.post(f"{shop.url}/signup", data={"email": "ana@example.com"}, timeout=10)
    assert r.status_code == 200, r.text
    assert "Thank you, ana@example.com!" in r.text
    # The api version in web's page proves the call went web -> gateway -> api.
    assert f"recorded by api@{api}" in r.text

    assert loopback.post(f"{shop.url}/signup", data={"email": "nope"}, timeout=10).status_code == 400
    direct = loopback.post(f"{shop.url}/api/signups", json={"email": "bo@example.com"}, timeout=5)
    assert direct.status_code == 201
    assert direct.json()["version"] == api


def api_totals(shop: Shop, api: str) -> dict[str, float]:
    """api's counters added up straight from each of its replicas (each counts its own requests)."""
    total: dict[str, float] = {}
    for port in shop.replica_ports("api"):
        for (name, version), value in metrics(f"http://127.0.0.1:{port}/metrics").items():
            assert version == api
            total[name] = total.get(name, 0) + value
    return total


def test_metrics_expose_the_counters(shop: Shop) -> None:
    web, api = shop.stable("web"), shop.stable("api")
    # The shop is shared with the module's other tests: this one counts what its own requests add.
    web_before = metrics(f"{shop.url}/metrics")  # web has one replica: its counts are exact
    api_before = api_totals(shop, api)
    loopback.get(f"{shop.url}/", timeout=5)
    loopback.post(f"{shop.url}/signup", data={"email": "ana@example.com"}, timeout=10)
    for _ in range(10):
        assert loopback.get(f"{shop.url}/api/checkout", timeout=5).status_code == 200
    assert loopback.post(f"{shop.url}/api/checkout", timeout=5).status_code == 200

    web_metrics = metrics(f"{shop.url}/metrics")

    def added(name: str) -> float:
        return web_metrics[(name, web)] - web_before.get((name, web), 0)

    assert (added("shop_visits_total"), added("shop_signups_total")) == (1, 1)
    assert added("shop_signup_errors_total") == 0

    names = {name for name, version in metrics(f"{shop.url}/api/metrics") if version == api}
    assert names == {"api_requests_total", "shop_checkout_total", "shop_checkout_errors_total"}
    total = api_totals(shop, api)
    grew = {name: total[name] - api_before.get(name, 0) for name in total}
    assert grew["shop_checkout_total"] == 11
    assert grew["shop_checkout_errors_total"] == 0
    assert grew["api_requests_total"] >= 12  # the checkouts and web's signup


def _alive(pid: int, start_time: int | None = None) -> bool:
    """Running (not a zombie), and the same process if start_time is given (shiploop.procs' identity)."""
    now = process_start_time(pid)  # None when gone or a zombie
    return now is not None and (start_time is None or now == start_time)


def _processes_under(root: Path) -> list[int]:
    """Live processes whose working directory or command line is inside the project."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if (cwd.startswith(str(root)) or str(root) in cmdline) and _alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def test_down_leaves_no_process(own_shop: Shop) -> None:
    shop = own_shop
    daemon = json.loads((shop.root / ".shiploop" / "daemon.json").read_text())
    envoy = json.loads(shop.db("SELECT value FROM kv WHERE key = 'envoy'")[0][0])
    replicas = shop.db("SELECT pid, start_time FROM replicas")
    tracked = [(daemon["pid"], daemon["start_time"]), (envoy["pid"], envoy["start_time"]), *replicas]
    assert len(replicas) == 3
    assert all(_alive(pid, start) for pid, start in tracked)
    assert len(_processes_under(shop.root)) >= len(tracked)  # the scan below sees them while they run

    assert "shiploop is down" in shop.cli("down")

    wait_until(lambda: not any(_alive(pid, start) for pid, start in tracked), 10, what="tracked processes to exit")
    wait_until(lambda: not _processes_under(shop.root), 10, what="no process left in the project")
    assert shop.db("SELECT value FROM kv WHERE key = 'envoy'") == []


def test_api_policy_catches_the_demo_bug_at_the_first_step() -> None:
    """The claim in api/service.yaml: min_samples is enough to catch the demo's bug while it is a 10% canary.

    Pure analysis, no processes: the expected counts of a candidate failing 8% of its
    requests (examples/demo.py's BUG_RATE) at the first step, against a clean stable.
    """
    project = load_project(SHOP)
    assert set(project.services) == {"web", "api"}
    policy = project.services["api"].rollout
    n = policy.min_samples
    base = 100 - policy.steps[0]
    stable = Reading(0.0, n * base // policy.steps[0], 0)
    buggy = Reading(0.0, n, round(0.08 * n))
    first = policy.steps[0]
    assert any(g.result.harmful for g in guardrail_results(policy, [Stratum(0, first, buggy, stable)]))
    clean = Stratum(0, first, Reading(0.0, n, 0), stable)
    assert not any(g.result.harmful for g in guardrail_results(policy, [clean]))
    assert policy.alpha == 0.05  # the demo is fast because of the load, not a looser test
