"""`shiploop controller` against FakeKubeApi (tests/kube_api_fake.py): a FAKE API server over real HTTP
implementing only the documented contract the controller uses (GET/PUT/POST of ConfigMaps and Leases,
resourceVersion, 409 on a stale write). lightkube, the real client, talks to it. Traffic and readings are
simulated on a fake clock (the rollout core is the real one), so whole rollouts take milliseconds."""

from __future__ import annotations

import asyncio
import functools
import json
import random
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import httpx
import pytest

from shiploop.contract import ErrorBody, Event, Health, Rollout, Status
from shiploop.gateway.model import Cluster, Endpoint, Match, Route, RoutingState, WeightedTarget
from shiploop.k8s.cluster_routing import ClusterRouting, deployed, parse, to_data
from shiploop.k8s.cluster_store import ROLLOUTS_CONFIGMAP
from shiploop.k8s.controller import ClusterController
from shiploop.k8s.controller_api import create_app
from shiploop.k8s.deploy import connect
from shiploop.k8s.manifests import CONTROLLER, ROUTING_CONFIGMAP
from shiploop.naming import RolloutState, Track, cluster_name
from shiploop.rollout.readings import Observation, Pair, Reading, ReadingUnavailable
from shiploop.spec import RolloutPolicy, ServiceSpec
from tests.kube_api_fake import FakeKubeApi
from tests.unit.rollout_fakes import FakeClock

NS = "shop"
SERVICE, STABLE, CANDIDATE = "web", "1111aaaa2222", "3333bbbb4444"
POLICY = {"steps": [10, 50, 100], "min_step": 2.0, "max_step": 10.0, "min_samples": 50,
          "guardrails": [{"metric": "error_rate", "tolerance": 0.002}]}  # fmt: skip


def initial_routing() -> ClusterRouting:
    spec = ServiceSpec.model_validate({"name": SERVICE, "run": {"command": ["x"]}, "rollout": POLICY})
    clusters = tuple(
        Cluster(cluster_name(SERVICE, v), (Endpoint(f"{SERVICE}-{v}.{NS}", 80),)) for v in (STABLE, CANDIDATE)
    )
    targets = (WeightedTarget(cluster_name(SERVICE, STABLE), 100, f"{SERVICE}@{STABLE}"),
               WeightedTarget(cluster_name(SERVICE, CANDIDATE), 0, f"{SERVICE}@{CANDIDATE}"))  # fmt: skip
    state = RoutingState(clusters, (Route("web-0", Match(prefix="/web/"), targets),), 8080, "0.0.0.0")
    versions = (deployed(spec, STABLE, Track.STABLE, 100), deployed(spec, CANDIDATE, Track.CANARY, 0))
    return ClusterRouting(state, {SERVICE: versions})


class Traffic:
    """Requests split by the weights in the fake API's routing ConfigMap; cumulative counters per version."""

    def __init__(self, api: FakeKubeApi, clock: FakeClock, rps: int = 100) -> None:
        self.api, self.clock, self.rps = api, clock, rps
        self.rng = random.Random(7)
        self.error_rate: dict[str, float] = {}
        self.counts: dict[str, list[int]] = {}
        self.answers: int | None = None  # how many more reads answer (None: all); then ReadingUnavailable

    def routing(self) -> ClusterRouting:
        cm = self.api.get(NS, "configmaps", ROUTING_CONFIGMAP)
        assert cm is not None
        return parse(cm["data"])

    def serve(self, seconds: int = 1) -> None:
        (route,) = self.routing().state.routes
        targets = [(t.cluster.split("_", 1)[1], t.weight) for t in route.targets if t.weight > 0]
        for _ in range(self.rps * seconds):
            version = self.rng.choices([v for v, _ in targets], [w for _, w in targets])[0]
            c = self.counts.setdefault(version, [0, 0])
            c[0] += 1
            c[1] += self.rng.random() < self.error_rate.get(version, 0.0)

    async def read(self, service: str, candidate: str, baseline: str, policy: RolloutPolicy,
                   fresh_after: float | None = None) -> Observation:  # fmt: skip
        if self.answers is not None:
            if self.answers <= 0:
                raise ReadingUnavailable("prometheus: connection refused")
            self.answers -= 1

        def reading(v: str) -> Reading:
            requests, errors = self.counts.get(v, [0, 0])
            return Reading(self.clock(), requests, errors)

        return Observation(Pair(reading(candidate), reading(baseline)))


@pytest.fixture
def api() -> Iterator[FakeKubeApi]:
    fake = FakeKubeApi()
    fake.start()
    # What `shiploop deploy --target kubernetes` leaves: the routing with the candidate at 0, the empty
    # records ConfigMap, the Lease with no holder.
    fake.put(NS, "configmaps", {"metadata": {"name": ROUTING_CONFIGMAP}, "data": to_data(initial_routing())})
    fake.put(NS, "configmaps", {"metadata": {"name": ROLLOUTS_CONFIGMAP}, "data": {}})
    fake.put(NS, "leases", {"metadata": {"name": CONTROLLER}, "spec": {"leaseDurationSeconds": 15}})
    yield fake
    fake.stop()


def controller(api: FakeKubeApi, name: str, clock: FakeClock, traffic: Traffic) -> ClusterController:
    assert api._server is not None
    client = connect(None, NS, server=f"http://127.0.0.1:{api._server.server_address[1]}")
    return ClusterController(client, NS, name, traffic, clock=clock, sleep=clock.sleep)


def record(api: FakeKubeApi) -> dict[str, Any]:
    cm = api.get(NS, "configmaps", ROLLOUTS_CONFIGMAP)
    assert cm is not None
    entries = [json.loads(v) for k, v in (cm.get("data") or {}).items() if k.startswith("rollout-")]
    assert len(entries) == 1, "one rollout, started once"
    return entries[0]


def weights(traffic: Traffic) -> dict[str, int]:
    return {v.version: v.weight for v in traffic.routing().versions(SERVICE)}


async def run_seconds(traffic: Traffic, clock: FakeClock, ctls: list[ClusterController], seconds: int) -> None:
    for _ in range(seconds):
        traffic.serve()
        clock.now += 1
        for c in ctls:
            await c.step()


def in_loop(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


async def run_until_ended(traffic: Traffic, clock: FakeClock, ctls: list[ClusterController], limit_s: int = 60) -> None:
    for _ in range(limit_s):
        await run_seconds(traffic, clock, ctls, 1)
        if record(traffic.api)["row"]["state"] not in ("pending", "progressing"):
            return


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_800_000_000.0)


@in_loop
async def test_two_controllers_race_for_the_lease_and_only_the_winner_acts(api: FakeKubeApi, clock: FakeClock):
    traffic = Traffic(api, clock)
    a, b = controller(api, "pod-a", clock, traffic), controller(api, "pod-b", clock, traffic)
    # A true race: b reads and writes the free Lease between a's read and a's write; a's write is stale.
    raced: list[bool] = []

    def b_first(ns: str, kind: str, name: str) -> None:
        if kind == "leases" and api.before_put is not None:
            api.before_put = None  # b's own write goes straight through
            raced.append(b.leader.try_lead())

    api.before_put = b_first
    await a.step()
    await b.step()
    assert raced == [True] and not a.leading and b.leading
    lease = api.get(NS, "leases", CONTROLLER)
    assert lease is not None and lease["spec"]["holderIdentity"] == "pod-b"
    assert record(api)["row"]["candidate"] == CANDIDATE  # the leader started the candidate's rollout
    # From here the follower, stepping beside the leader every second, never writes a ConfigMap.
    follower_writes: list[str] = []
    write = a.configmaps.change
    a.configmaps.change = lambda name, change: follower_writes.append(name) or write(name, change)  # type: ignore[method-assign]
    await run_until_ended(traffic, clock, [b, a])
    assert follower_writes == [] and not a.leading
    r = record(api)
    assert r["row"]["state"] == RolloutState.PROMOTED, r["row"]["outcome_reason"]
    assert weights(traffic) == {CANDIDATE: 100} and not a.leading


@in_loop
async def test_a_killed_leader_is_replaced_after_the_lease_and_the_rollout_resumes_at_its_step(
    api: FakeKubeApi, clock: FakeClock
):
    traffic = Traffic(api, clock)
    a, b = controller(api, "pod-a", clock, traffic), controller(api, "pod-b", clock, traffic)
    await a.step()
    await b.step()
    assert a.leading and not b.leading
    for _ in range(60):  # until the rollout reaches its second step
        await run_seconds(traffic, clock, [a, b], 1)
        if record(api)["row"]["step"] == 1:
            break
    before = record(api)
    assert before["row"]["step"] == 1 and weights(traffic) == {STABLE: 50, CANDIDATE: 50}
    first_step, second_step = before["row"]["data"]["steps"]

    # a is killed: it never steps again. Within the Lease's 15 s b waits and nothing moves.
    for _ in range(14):
        await run_seconds(traffic, clock, [b], 1)
        assert not b.leading
    assert record(api)["row"]["updated_at"] == before["row"]["updated_at"]
    await run_seconds(traffic, clock, [b], 2)
    assert b.leading
    resumed = record(api)
    # Resumed at the step it stood, not from the start: the first step's evidence as it was, the second
    # step the same one (its start reading and time), judged on (16 s past its minimum: it may have ended).
    steps = resumed["row"]["data"]["steps"]
    assert steps[0] == first_step and resumed["row"]["step"] >= 1
    assert (steps[1]["started_at"], steps[1]["start"]) == (second_step["started_at"], second_step["start"])
    assert [e["kind"] for e in resumed["events"]].count("rollout-resumed") == 1
    assert [e["kind"] for e in resumed["events"]].count("rollout-started") == 1

    await run_until_ended(traffic, clock, [b])
    done = record(api)
    assert done["row"]["state"] == RolloutState.PROMOTED, done["row"]["outcome_reason"]
    assert [s["index"] for s in done["row"]["data"]["steps"]] == [0, 1, 2]
    assert weights(traffic) == {CANDIDATE: 100}
    assert traffic.routing().one(SERVICE, Track.STABLE).version == CANDIDATE  # type: ignore[union-attr]


@in_loop
async def test_a_409_on_a_routing_write_reads_again_and_keeps_the_other_writers_change(
    api: FakeKubeApi, clock: FakeClock
):
    traffic = Traffic(api, clock)
    traffic.error_rate[CANDIDATE] = 0.3
    a = controller(api, "pod-a", clock, traffic)
    other_writes: list[int] = []

    def deploy_writes_first(ns: str, kind: str, name: str) -> None:
        # Another writer (a deploy of another service) updates the routing ConfigMap between the
        # controller's read and its write: the controller's write carries a stale resourceVersion.
        if kind == "configmaps" and name == ROUTING_CONFIGMAP and not other_writes:
            cm = api.get(ns, kind, name)
            assert cm is not None
            cm["data"]["note.txt"] = "written by another writer\n"
            api.put(ns, kind, cm)
            other_writes.append(1)

    api.before_put = deploy_writes_first
    await a.step()  # starts the rollout: its first write is the step's weight
    assert other_writes == [1] and a.configmaps.conflicts == 1
    path = f"/api/v1/namespaces/{NS}/configmaps/{ROUTING_CONFIGMAP}?fieldManager=shiploop-controller"
    assert ("PUT", path, 409) in api.requests
    cm = api.get(NS, "configmaps", ROUTING_CONFIGMAP)
    assert cm is not None and cm["data"]["note.txt"] == "written by another writer\n"
    assert weights(traffic) == {STABLE: 90, CANDIDATE: 10}

    await run_until_ended(traffic, clock, [a], 30)  # and the candidate failing 30% is rolled back
    r = record(api)
    assert r["row"]["state"] == RolloutState.ROLLED_BACK and r["row"]["data"]["rule"] == "harm"
    assert weights(traffic) == {STABLE: 100}
    assert cluster_name(SERVICE, CANDIDATE) not in traffic.routing().state.cluster_names()


@in_loop
async def test_the_api_serves_the_rollout_routes_with_the_contract_models(api: FakeKubeApi, clock: FakeClock):
    """The routes `shiploop rollout`/`rollout status` call, over HTTP (ASGI) against the controllers."""
    traffic = Traffic(api, clock)
    a, b = controller(api, "pod-a", clock, traffic), controller(api, "pod-b", clock, traffic)
    token = {"Authorization": "Bearer s3cret"}

    def client(ctl: ClusterController) -> httpx.AsyncClient:
        app = create_app(ctl, "shop", "s3cret")
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://controller")

    async with client(a) as leader, client(b) as follower:
        missing = await leader.get(f"/v1/services/{SERVICE}/rollout")
        assert missing.status_code == 404 and ErrorBody.model_validate(missing.json()).kind == "NotFound"
        await a.step()  # a leads and starts the candidate's rollout
        await b.step()
        await run_seconds(traffic, clock, [a, b], 3)

        # Reads from any replica (the records are in the cluster), parsed with the CLI's models.
        for c in (leader, follower):
            got = Rollout.model_validate((await c.get(f"/v1/services/{SERVICE}/rollout")).json())
            assert (got.state, got.candidate, got.baseline, got.weight) == ("progressing", CANDIDATE, STABLE, 10)
            assert got.last is not None and got.last.candidate.requests > 0
        history = (await follower.get(f"/v1/services/{SERVICE}/rollouts")).json()
        assert [Rollout.model_validate(h).id for h in history] == [1]
        assert (await leader.get("/healthz")).json() == {
            "identity": "pod-a",
            "leading": True,
            "steps": 4,
            "error": None,
        }
        assert Health.model_validate((await leader.get("/v1/health")).json()).ok

        # Writes: the token, and only the leader.
        no_token = await leader.post(f"/v1/services/{SERVICE}/rollout/abort")
        assert no_token.status_code == 401 and no_token.json()["kind"] == "Unauthorized"
        not_leader = await follower.post(f"/v1/services/{SERVICE}/rollout/abort", headers=token)
        assert not_leader.status_code == 503 and ErrorBody.model_validate(not_leader.json()).kind == "Unavailable"
        assert "pod-b" in not_leader.json()["error"] and "does not hold the Lease" in not_leader.json()["error"]
        aborted = await leader.post(f"/v1/services/{SERVICE}/rollout/abort", headers=token)
        assert aborted.status_code == 200, aborted.text
        assert Rollout.model_validate(aborted.json()).state == "aborted"
        assert weights(traffic) == {STABLE: 100}
        # Nothing left to roll out: the hint is the command that places a candidate.
        again = await leader.post(f"/v1/services/{SERVICE}/rollout", headers=token)
        assert again.status_code == 409 and "shiploop deploy --target kubernetes" in again.json()["error"]
        unknown = await leader.post(f"/v1/services/{SERVICE}/rollout/explode", headers=token)
        assert unknown.status_code == 422 and unknown.json()["kind"] == "Invalid"
        status = Status.model_validate((await follower.get("/v1/status")).json())
        (web,) = status.services
        assert [(v.id, v.track, v.weight) for v in web.versions] == [(STABLE, "stable", 100)]
        assert web.rollout is not None and web.rollout.state == "aborted"
        # `rollout --wait` follows the events: the rollout's, from its record, oldest first, with ids to follow.
        events = [
            Event.model_validate(e) for e in (await follower.get("/v1/events", params={"service": SERVICE})).json()
        ]
        assert [e.kind for e in events][0] == "rollout-started" and events[-1].kind == "rollout-aborted"
        later = (await follower.get("/v1/events", params={"service": SERVICE, "after": events[-2].id})).json()
        assert [e["kind"] for e in later] == ["rollout-aborted"]


@in_loop
async def test_a_rollout_starts_once_metrics_answer_and_a_start_that_breaks_off_fails_back_to_stable(
    api: FakeKubeApi, clock: FakeClock
):
    traffic = Traffic(api, clock)
    a = controller(api, "pod-a", clock, traffic)
    traffic.answers = 0  # Prometheus does not answer yet: the candidate waits at 0%, no rollout
    await run_seconds(traffic, clock, [a], 3)
    cm = api.get(NS, "configmaps", ROLLOUTS_CONFIGMAP)
    assert cm is not None and not cm.get("data") and weights(traffic) == {STABLE: 100, CANDIDATE: 0}

    traffic.answers = 1  # it answers the look before the start, then goes away for good
    await a.step()
    r = record(api)
    assert r["row"]["state"] == RolloutState.FAILED and r["row"]["data"]["rule"] == "start_failed"
    assert "could not start" in r["row"]["outcome_reason"] and a.error is not None
    assert weights(traffic) == {STABLE: 100}  # the 10% it had set are back on stable, the candidate out
    await run_seconds(traffic, clock, [a], 2)
    assert record(api)["row"]["id"] == r["row"]["id"]  # not started again
