"""`shiploop controller` rolls back a failing candidate with real parts wherever they exist here:

- the API server is FakeKubeApi (tests/kube_api_fake.py: a FAKE of the documented ConfigMap/Lease
  contract; no API server can run on these machines), the ConfigMaps and the Lease in it;
- a file synced from the routing ConfigMap stands in for the kubelet's ConfigMap volume;
- REAL: the gateway agent (`shiploop agent`) driving a real Envoy from that file, a real
  Prometheus scraping Envoy's stats listener, open-loop load through Envoy, the two versions
  as real processes, `shiploop controller` itself as a process, judging from Prometheus, and the
  CLI (`rollout status`, `status`) pointed at its API over https as at a remote daemon.

The candidate fails 30% of its requests: the controller takes the Lease, starts the rollout deploy
placed at 0%, moves traffic to it through the ConfigMap, sees the harm in Prometheus's counts and rolls
back; Envoy serves only stable again. Its API answers `rollout status` with the contract's model.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from shiploop.contract import Rollout
from shiploop.daemon.remote import _generate as generate_certificate
from shiploop.gateway.envoy import envoy_binary
from shiploop.gateway.model import Cluster, Endpoint, Match, Route, RoutingState, WeightedTarget
from shiploop.k8s.agent import write_atomically
from shiploop.k8s.cluster_routing import ClusterRouting, deployed, parse, to_data
from shiploop.k8s.cluster_store import ROLLOUTS_CONFIGMAP
from shiploop.k8s.manifests import CONTROLLER, ROUTING_CONFIGMAP, ROUTING_KEY
from shiploop.loadgen import background_load
from shiploop.naming import RolloutState, Track, cluster_name
from shiploop.procs import free_port, terminate_group
from shiploop.spec import ServiceSpec
from tests import loopback
from tests.conftest import App, wait_until
from tests.integration.test_k8s_agent import Gateway
from tests.kube_api_fake import FakeKubeApi

NS, PROJECT, SERVICE = "shop", "testproj", "web"
STABLE, CANDIDATE = "0aaaaaaaaaa1", "0bbbbbbbbbb2"
RPS = 40
POLICY = {"steps": [50, 100], "min_step": 3.0, "max_step": 20.0, "min_samples": 40,
          "guardrails": [{"metric": "error_rate", "tolerance": 0.01}], "limits": []}  # fmt: skip
TOKEN = "test-token"


def routing(ports: dict[str, int], listen_port: int) -> ClusterRouting:
    spec = ServiceSpec.model_validate({"name": SERVICE, "run": {"command": ["x"]}, "rollout": POLICY})
    clusters = tuple(Cluster(cluster_name(SERVICE, v), (Endpoint("127.0.0.1", p),)) for v, p in ports.items())
    targets = (WeightedTarget(cluster_name(SERVICE, STABLE), 100, f"{SERVICE}@{STABLE}"),
               WeightedTarget(cluster_name(SERVICE, CANDIDATE), 0, f"{SERVICE}@{CANDIDATE}"))  # fmt: skip
    state = RoutingState(clusters, (Route("web-0", Match(prefix="/"), targets),), listen_port, "127.0.0.1")
    return ClusterRouting(state, {SERVICE: (deployed(spec, STABLE, Track.STABLE, 100),
                                            deployed(spec, CANDIDATE, Track.CANARY, 0))})  # fmt: skip


class Kubelet(threading.Thread):
    """Keeps the routing ConfigMap's file in step with the API, as the kubelet does a ConfigMap volume."""

    def __init__(self, api: FakeKubeApi, path: Path) -> None:
        super().__init__(daemon=True)
        self.api, self.path, self.stop = api, path, threading.Event()

    def sync(self) -> None:
        cm = self.api.get(NS, "configmaps", ROUTING_CONFIGMAP)
        assert cm is not None
        text = cm["data"][ROUTING_KEY]
        if not self.path.exists() or self.path.read_text() != text:
            write_atomically(self.path, text)

    def run(self) -> None:
        while not self.stop.wait(0.1):
            self.sync()


@pytest.fixture
def parts(spawn_app: Callable[..., App]) -> Iterator[dict[str, Any]]:
    if shutil.which("prometheus") is None:
        pytest.skip("prometheus not installed (Debian: apt-get install prometheus; make test does it as root)")
    workdir = Path(tempfile.mkdtemp(prefix="shiploop-ctl-", dir="/tmp"))  # short: Envoy's admin socket path
    api = FakeKubeApi()
    api_url = api.start()
    gw = Gateway(workdir)
    ports = {STABLE: spawn_app(version=STABLE, service=SERVICE).port,
             CANDIDATE: spawn_app(version=CANDIDATE, service=SERVICE, FAIL_RATE="0.3").port}  # fmt: skip
    api.put(NS, "configmaps", {"metadata": {"name": ROUTING_CONFIGMAP}, "data": to_data(routing(ports, gw.port))})
    api.put(NS, "configmaps", {"metadata": {"name": ROLLOUTS_CONFIGMAP}, "data": {}})
    api.put(NS, "leases", {"metadata": {"name": CONTROLLER}, "spec": {"leaseDurationSeconds": 15}})
    kubelet = Kubelet(api, gw.doc)
    kubelet.sync()
    kubelet.start()
    agent = [sys.executable, "-m", "shiploop.cli", "agent", "--state", str(gw.doc), "--xds-dir", str(gw.xds)]
    agent += ["--stats-port", str(gw.stats_port), "--stats-address", "127.0.0.1"]
    prom_port = free_port()
    config = {"global": {"scrape_interval": "1s"},
              "scrape_configs": [{"job_name": "gateway", "static_configs": [
                  {"targets": [f"127.0.0.1:{gw.stats_port}"], "labels": {"project": PROJECT}}]}]}  # fmt: skip
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    try:
        subprocess.run([*agent, "--once"], check=True, capture_output=True, timeout=60)
        gw.start(envoy_binary(), "-c", str(gw.xds / "bootstrap.json"), "--log-level", "warn",
                 "--base-id-path", str(workdir / "base-id"), "--use-dynamic-base-id", log="envoy.log")  # fmt: skip
        gw.start(*agent, "--health-port", str(gw.health_port), "--interval", "0.1", log="agent.log")
        gw.start(shutil.which("prometheus") or "prometheus", f"--config.file={workdir / 'prometheus.yml'}",
                 f"--storage.tsdb.path={workdir / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}",
                 log="prometheus.log")  # fmt: skip
        yield {"api": api, "api_url": api_url, "gw": gw, "prometheus": f"http://127.0.0.1:{prom_port}",
               "workdir": workdir}  # fmt: skip
    finally:
        kubelet.stop.set()
        for proc in reversed(gw.procs):
            terminate_group(proc.pid, 3)
            proc.wait(timeout=5)
        api.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def record(api: FakeKubeApi) -> dict[str, Any] | None:
    cm = api.get(NS, "configmaps", ROLLOUTS_CONFIGMAP)
    entries = [json.loads(v) for k, v in ((cm or {}).get("data") or {}).items() if k.startswith("rollout-")]
    return entries[-1] if entries else None


def test_the_controller_rolls_back_a_failing_candidate_through_the_routing_configmap(parts: dict[str, Any]):
    api, gw = parts["api"], parts["gw"]

    def served_by() -> Counter[str]:
        try:
            return gw.versions(10)
        except httpx.HTTPError:
            return Counter()

    wait_until(lambda: served_by() == Counter({f"{SERVICE}@{STABLE}": 10}), 20, what="envoy serving stable")
    wait_until(lambda: _ready(parts["prometheus"]), 20, what="prometheus ready")
    api_port = free_port()
    workdir: Path = parts["workdir"]
    cert, key, token_file = workdir / "cert.pem", workdir / "key.pem", workdir / "token"
    generate_certificate(cert, key, ["127.0.0.1", "localhost"])
    token_file.write_text(TOKEN)
    controller = [sys.executable, "-m", "shiploop.cli", "controller", "--namespace", NS,
                  "--prometheus", parts["prometheus"], "--project", PROJECT, "--scrape-interval", "1",
                  "--health-port", str(api_port), "--address", "127.0.0.1", "--identity", "pod-a",
                  "--api-server", parts["api_url"], "--interval", "0.5", "--token-file", str(token_file),
                  "--tls-cert", str(cert), "--tls-key", str(key)]  # fmt: skip
    with background_load(f"http://127.0.0.1:{gw.port}/x", rps=RPS) as load:
        load.wait_until(lambda r: r.total >= RPS, 10)
        proc = gw.start(*controller, log="controller.log")
        try:
            wait_until(lambda: (r := record(api)) and r["row"]["state"] == RolloutState.ROLLED_BACK, 30,
                       interval=0.2, what="the controller rolling the candidate back")  # fmt: skip
            base = f"https://127.0.0.1:{api_port}"
            with httpx.Client(verify=ssl.create_default_context(cafile=cert), timeout=5) as http:
                status = Rollout.model_validate(http.get(f"{base}/v1/services/{SERVICE}/rollout").json())
                refused = http.post(f"{base}/v1/services/{SERVICE}/rollout/abort")
            # The CLI itself, pointed at the controller as at a remote daemon.
            env = dict(os.environ, SHIPLOOP_URL=base, SHIPLOOP_TOKEN=TOKEN, SHIPLOOP_CA=str(cert))
            cli = [sys.executable, "-m", "shiploop.cli"]
            shown = subprocess.run([*cli, "rollout", "status", SERVICE, "--json"], env=env, cwd=workdir,
                                   capture_output=True, text=True, timeout=30)  # fmt: skip
            listed = subprocess.run([*cli, "status", "--json"], env=env, cwd=workdir,
                                    capture_output=True, text=True, timeout=30)  # fmt: skip
        finally:
            terminate_group(proc.pid, 5)
            proc.wait(timeout=10)
    r = record(api)
    assert r is not None
    log = (parts["workdir"] / "controller.log").read_text()
    assert r["row"]["data"]["rule"] == "harm", (r["row"]["outcome_reason"], log[-2000:])
    kinds = [e["kind"] for e in r["events"]]
    assert kinds[0] == "rollout-started" and "rollout-step" in kinds and kinds[-1] == "rollout-rolled-back"
    # It had moved traffic to the candidate (50%) before judging it, and Envoy's counts in Prometheus show it.
    (step,) = r["row"]["data"]["steps"]
    assert step["weight"] == 50 and step["end"]["candidate"]["requests"] > step["start"]["candidate"]["requests"]
    cm = api.get(NS, "configmaps", ROUTING_CONFIGMAP)
    assert cm is not None
    after = parse(cm["data"])
    assert [v.version for v in after.versions(SERVICE)] == [STABLE]
    wait_until(lambda: served_by() == Counter({f"{SERVICE}@{STABLE}": 10}), 10, what="envoy back on stable only")
    # The API: `rollout status` as the contract's model; a write without the token refused.
    assert (status.state, status.candidate, status.baseline) == (RolloutState.ROLLED_BACK, CANDIDATE, STABLE)
    assert refused.status_code == 401 and refused.json()["kind"] == "Unauthorized"
    assert shown.returncode in (0, 3), shown.stdout + shown.stderr  # 3: `rollout` says "rolled back" this way
    cli_view = Rollout.model_validate(json.loads(shown.stdout))
    assert (cli_view.state, cli_view.candidate) == (RolloutState.ROLLED_BACK, CANDIDATE)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    (web,) = json.loads(listed.stdout)["services"]
    assert [(v["id"], v["track"], v["weight"]) for v in web["versions"]] == [(STABLE, "stable", 100)]
    assert "took the Lease" in log


def _ready(url: str) -> bool:
    try:
        return loopback.get(f"{url}/-/ready", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
