"""`shiploop agent` drives a real Envoy from a routing-state document, as in the gateway pod:
the agent writes the bootstrap and the xDS files, Envoy starts on them, and a weight change
in the document (the ConfigMap's file, replaced the way the kubelet replaces it) moves traffic."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from shiploop.gateway.envoy import envoy_binary
from shiploop.gateway.model import Cluster, Endpoint, Match, Route, RoutingState, WeightedTarget
from shiploop.k8s import routing_doc
from shiploop.k8s.agent import write_atomically
from shiploop.procs import free_port, terminate_group
from tests import loopback
from tests.conftest import App, wait_until


def state(ports: dict[str, int], weights: dict[str, int], listen_port: int) -> RoutingState:
    clusters = tuple(Cluster(f"web_{v}", (Endpoint("127.0.0.1", p),)) for v, p in sorted(ports.items()))
    targets = tuple(WeightedTarget(f"web_{v}", weights[v], f"web@{v}") for v in sorted(ports))
    return RoutingState(clusters, (Route("web-0", Match(prefix="/"), targets),), listen_port, "127.0.0.1")


class Gateway:
    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.doc = workdir / "routing.json"
        self.xds = workdir / "xds"
        self.port = free_port()
        self.stats_port = free_port()
        self.health_port = free_port()
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str, log: str) -> subprocess.Popen[bytes]:
        out = open(self.dir / log, "wb")
        proc = subprocess.Popen(list(args), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        return proc

    def write(self, s: RoutingState) -> None:
        write_atomically(self.doc, routing_doc.dumps(s))

    def health(self) -> httpx.Response:
        return loopback.get(f"http://127.0.0.1:{self.health_port}/healthz", timeout=1)

    def health_status(self) -> int:
        try:
            return self.health().status_code
        except httpx.HTTPError:
            return 0  # not listening yet

    def versions(self, n: int) -> Counter[str]:
        with loopback.client(timeout=2) as client:
            return Counter(
                client.get(f"http://127.0.0.1:{self.port}/").headers.get("x-shiploop-version", "") for _ in range(n)
            )


@pytest.fixture
def gateway(spawn_app: Callable[..., App]) -> Iterator[tuple[Gateway, dict[str, int]]]:
    # Short: Envoy's admin socket lives in the xDS directory and a socket path has 107 bytes.
    workdir = Path(tempfile.mkdtemp(prefix="shiploop-agent-", dir="/tmp"))
    gw = Gateway(workdir)
    ports = {v: spawn_app(version=v, service="web").port for v in ("v1", "v2")}
    gw.write(state(ports, {"v1": 100, "v2": 0}, gw.port))
    agent = [sys.executable, "-m", "shiploop.cli", "agent", "--state", str(gw.doc), "--xds-dir", str(gw.xds)]
    agent += ["--stats-port", str(gw.stats_port), "--stats-address", "127.0.0.1"]
    try:
        # What the pod's init container does, then Envoy and the agent side by side.
        subprocess.run([*agent, "--once"], check=True, capture_output=True, timeout=60)
        assert (gw.xds / "bootstrap.json").exists() and (gw.xds / "current" / "cds.json").exists()
        gw.start(envoy_binary(), "-c", str(gw.xds / "bootstrap.json"), "--log-level", "warn",
                 "--base-id-path", str(workdir / "base-id"), "--use-dynamic-base-id", log="envoy.log")  # fmt: skip
        gw.start(*agent, "--health-port", str(gw.health_port), "--interval", "0.1", log="agent.log")
        yield gw, ports
    finally:
        for proc in gw.procs:
            terminate_group(proc.pid, 3)
            proc.wait(timeout=5)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.mark.slow  # over 4 s alone: with `make test`, not `make test-fast`
def test_envoy_follows_weight_changes_in_the_routing_document(gateway: tuple[Gateway, dict[str, int]]):
    gw, ports = gateway

    def serving(expected: str) -> bool:
        try:
            return gw.versions(10) == Counter({expected: 10})
        except httpx.HTTPError:
            return False

    wait_until(lambda: serving("web@v1"), 20, what="envoy serving v1 from the agent's first generation")
    wait_until(lambda: gw.health_status() == 200, 10, what="agent healthy")

    gw.write(state(ports, {"v1": 0, "v2": 100}, gw.port))
    wait_until(lambda: serving("web@v2"), 10, what="all traffic on v2 after the document changed")

    gw.write(state(ports, {"v1": 50, "v2": 50}, gw.port))
    wait_until(lambda: set(gw.versions(40)) == {"web@v1", "web@v2"}, 10, what="a 50/50 split")

    # A broken document keeps the last good routing serving and turns the agent unhealthy, saying why.
    gw.doc.write_text("{not json")
    wait_until(lambda: gw.health_status() == 503, 10, what="agent unhealthy on a broken document")
    assert "not JSON" in gw.health().json()["error"]
    assert set(gw.versions(40)) == {"web@v1", "web@v2"}

    gw.write(state(ports, {"v1": 100, "v2": 0}, gw.port))
    wait_until(lambda: serving("web@v1") and gw.health_status() == 200, 10, what="recovered on a good document")
    # Each applied document was confirmed by Envoy through its admin socket (the agent attached to it).
    assert gw.health().json()["applied"] >= 3
    # Envoy's stats listener (the pod's Prometheus target) answers with per-version series.
    metrics = loopback.get(f"http://127.0.0.1:{gw.stats_port}/metrics", timeout=2).text
    assert 'envoy_cluster_upstream_rq_completed{envoy_cluster_name="web_v2",service="web",version="v2"}' in metrics
    assert os.path.exists(gw.xds / "admin.sock")
