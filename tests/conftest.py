"""Shared fixtures: real processes on free ports, always ended at teardown."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shiploop.procs import free_port, terminate_group
from tests import loopback
from tests.daemon_helpers import Project, temp_project
from tests.scheduling import LongestFirst, run_order, run_rank, shares_module_fixtures

APPS = Path(__file__).parent / "apps"


def wait_until(condition: Callable[[], Any], timeout: float = 10.0, *, interval: float = 0.05, what: str = "") -> Any:
    """Poll `condition` until it returns something truthy, failing after `timeout` seconds.

    Every 50 ms by default: most conditions ask the daemon's API (~9 ms of CPU a poll, the
    test's and the daemon's), and at every 20 ms a wait held half a core of a CPU-bound suite."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(interval)


class App:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, version: str) -> None:
        self.proc = proc
        self.port = port
        self.version = version
        self.url = f"http://127.0.0.1:{port}"

    def served(self) -> int:
        return int(loopback.get(f"{self.url}/_served").json()["requests"])


@pytest.fixture
def spawn_app(tmp_path: Path) -> Iterator[Callable[..., App]]:
    """Start tests/apps/echo_app.py as a real process; wait until it is healthy."""
    started: list[App] = []

    def spawn(version: str = "v1", service: str = "echo", **knobs: str) -> App:
        port = free_port()
        env = dict(os.environ, PORT=str(port), SHIPLOOP_SERVICE=service, SHIPLOOP_VERSION=version, **knobs)
        log = open(tmp_path / f"{service}-{version}-{port}.log", "wb")
        proc = subprocess.Popen(
            [sys.executable, str(APPS / "echo_app.py")],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        app = App(proc, port, version)
        started.append(app)

        def healthy() -> bool:
            try:
                return loopback.get(f"{app.url}/healthz", timeout=0.5).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, 10, what=f"app {version} healthy")
        return app

    yield spawn
    for app in started:
        terminate_group(app.proc.pid, 3)
        app.proc.wait(timeout=5)


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    """An empty project driven through the real CLI; `down` at teardown, which must end
    every process the store recorded. Modules that need services add them, or override
    this fixture with one that takes it (`def project(project)`)."""
    with temp_project(tmp_path / "proj") as p:
        yield p


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()


TIERS = ("unit", "integration", "e2e")


# The listening ports the xdist workers share out (FIRST-LAST). `make test` runs the unit tier beside
# the others, and gives it ports of its own (the Makefile's `units`): no two sessions share a port.
TEST_PORTS = os.environ.get("SHIPLOOP_TEST_PORTS", "15000-29999")


def pytest_configure(config: pytest.Config) -> None:
    """Each xdist worker picks listening ports from its own share of the range: the
    processes its tests start inherit the variable, so two workers' replicas, gateways and
    daemons never choose the same port between its pick and its bind."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if worker.startswith("gw") and count > 1 and "SHIPLOOP_PORT_RANGE" not in os.environ:
        first, last = (int(p) for p in TEST_PORTS.split("-"))
        index, span = int(worker[2:]), (last + 1 - first) // count
        os.environ["SHIPLOOP_PORT_RANGE"] = f"{first + index * span}-{first + (index + 1) * span - 1}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tiers by directory: tests/unit (no processes), tests/integration (real Envoy
    and daemon), tests/e2e (whole rollouts under load, marked slow)."""
    ranks: dict[str, int] = {}
    for item in items:
        tier = next((t for t in TIERS if f"/tests/{t}/" in str(item.path)), None)
        if tier is not None:
            item.add_marker(getattr(pytest.mark, tier))
        if tier == "e2e":
            item.add_marker(pytest.mark.slow)
        elif item.get_closest_marker("serial") is not None:
            raise pytest.UsageError(f"{item.nodeid}: a fault test (serial) goes in tests/e2e, where make faults looks")
        rank, unit = run_rank(tier, item.get_closest_marker("slow") is not None), _work_unit(item)
        ranks[unit] = min(rank, ranks.get(unit, rank))
    # The longest first (tests/scheduling.py); a module's tests keep their order.
    place = run_order(ranks)
    items.sort(key=lambda item: place[_work_unit(item)])


def _work_unit(item: pytest.Item) -> str:
    """A module whose tests share a module fixture moves as one; any other test on its own."""
    return str(item.path) if shares_module_fixtures(item.path) else item.nodeid


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> LongestFirst | None:
    """`--dist loadscope` hands out the collection in its order, longest first (tests/scheduling.py)."""
    return LongestFirst(config, log) if config.option.dist == "loadscope" else None
