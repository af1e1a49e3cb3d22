"""Personal routes held by leases, without processes: routing, claims, renewals, the sweep (fake clock, gateway)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from shiploop.errors import Conflict, Invalid, NotFound
from shiploop.gateway.model import PublishResult, RoutingState
from shiploop.gateway.render import route_configuration
from shiploop.naming import DeploymentState, Track, cluster_name
from shiploop.paths import ProjectPaths
from shiploop.server.context import PlaneContext
from shiploop.server.intercepts import LEASE_S, RENEW_S, Intercepts
from shiploop.server.routing import (
    HeaderRoute,
    PersonalRoute,
    Placement,
    ServiceRouting,
    build_routing_state,
    personal_cluster_name,
)
from shiploop.server.specs import spec_to_json
from shiploop.spec import load_project, load_service
from shiploop.store import DeploymentRow, Store

SERVICE = "name: web\nrun: {command: [python, app.py]}\nroutes:\n  - prefix: /web/\n  - path: /exact\n"


def write_project(root: Path) -> None:
    (root / "web").mkdir(parents=True)
    (root / "shiploop.yaml").write_text("name: t\n")
    (root / "web" / "service.yaml").write_text(SERVICE)
    (root / "web" / "app.py").write_text("")


@pytest.fixture
def web_spec(tmp_path: Path) -> Any:
    write_project(tmp_path / "spec")
    return load_service(tmp_path / "spec" / "web")


def routing(spec: Any, personal: tuple[PersonalRoute, ...], header_routes: tuple[Any, ...] = ()) -> RoutingState:
    placements = (Placement("aaaa", Track.STABLE, 95), Placement("bbbb", Track.CANARY, 5))
    return build_routing_state(
        [ServiceRouting(spec, placements, header_routes, personal=personal)],
        lambda s, v: [1000 if v == "aaaa" else 2000],
        8080,
    )


# -- routing ------------------------------------------------------------------------------------


def test_a_personal_route_has_its_own_cluster_so_rollout_evidence_never_counts_it(web_spec):
    """The rollout reads each version's counters from the cluster cluster_name(service, version):
    personal traffic must land in neither the stable's nor the canary's cluster."""
    state = routing(web_spec, (PersonalRoute("ab12", "x-user", "ana", "127.0.0.1", 9000),))
    own = personal_cluster_name("web", "ab12")
    versions = {cluster_name("web", "aaaa"), cluster_name("web", "bbbb")}
    assert own not in versions and own in state.cluster_names()
    cluster = next(c for c in state.clusters if c.name == own)
    assert [(e.host, e.port) for e in cluster.endpoints] == [("127.0.0.1", 9000)]
    for route in state.routes:
        clusters = {t.cluster for t in route.targets} | set(route.mirrors)
        if ("x-user", "ana") in route.match.headers:
            assert clusters == {own}  # every route matching the header goes to the developer only
        else:
            assert own not in clusters  # and no other route sends anything there


def test_personal_routes_come_before_header_and_weighted_routes_of_the_same_match(web_spec):
    state = routing(
        web_spec,
        (
            PersonalRoute("all1", "", "", "127.0.0.1", 9100),  # --all
            PersonalRoute("ab12", "x-user", "ana", "127.0.0.1", 9000),
        ),
        (HeaderRoute("x-user", "ana", "bbbb"), HeaderRoute("x-beta", "1", "bbbb")),
    )
    names = [r.name for r in state.routes]
    for i in (0, 1):  # each of the spec's routes: /web/ and /exact
        ana, all_, hdr, main = f"web-{i}-pab12", f"web-{i}-pall1", f"web-{i}-h0", f"web-{i}"
        # the intercept of x-user=ana wins over `route --header x-user=ana`, both over the weights,
        # and an intercept of every request sits just before the weighted route (after every header match)
        assert names.index(ana) < names.index(hdr) < names.index(all_) < names.index(main)
    rendered = route_configuration(state)["virtual_hosts"][0]["routes"]
    first_for_ana = next(
        r
        for r in rendered
        if r["match"].get("prefix") == "/web/"
        and {"name": "x-user", "string_match": {"exact": "ana"}} in r["match"].get("headers", [])
    )
    assert first_for_ana["route"]["cluster"] == personal_cluster_name("web", "ab12")
    assert first_for_ana["response_headers_to_add"][0]["header"]["value"] == "web@intercept:127.0.0.1:9000"


# -- claims, renewals and the sweep against a fake gateway and clock ---------------------------


class FakeGateway:
    def __init__(self) -> None:
        self.published: list[RoutingState] = []

    async def publish(self, state: RoutingState) -> PublishResult:
        self.published.append(state)
        return PublishResult(len(self.published), True, 0.001)


class FakeRuntime:
    def endpoints(self, service: str, version: str) -> list[int]:
        return [1000]


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def plane(tmp_path: Path) -> Any:
    write_project(tmp_path)
    paths = ProjectPaths(tmp_path)
    store = Store(paths.db)
    spec = load_service(tmp_path / "web")
    store.upsert_deployment(
        DeploymentRow("web", "aaaa", Track.STABLE, 100, 1, spec_to_json(spec), DeploymentState.RUNNING, 0.0)
    )
    clock = Clock()
    gateway = FakeGateway()
    runtime = FakeRuntime()
    ctx = PlaneContext(paths, load_project(tmp_path), store, runtime, gateway, 8080, clock)  # type: ignore[arg-type]
    yield Intercepts(ctx), clock, gateway, store
    store.close()


def personal_clusters(state: RoutingState) -> set[str]:
    return {c.name for c in state.clusters if "_intercept-" in c.name}


def test_a_second_claim_is_refused_naming_the_owner_until_taken_over(plane):
    intercepts, clock, gateway, store = plane
    run = asyncio.run
    first = run(intercepts.claim("web", "X-User", "ana", "127.0.0.1", 9000, "ana@laptop", 41))
    assert (first.header, first.expires_at) == ("x-user", clock.now + LEASE_S)
    assert personal_clusters(gateway.published[-1]) == {personal_cluster_name("web", first.id)}
    with pytest.raises(Conflict) as refused:
        run(intercepts.claim("web", "x-user", "ana", "127.0.0.1", 9001, "bo@desk", 42))
    assert "intercepted by ana@laptop (pid 41) until" in refused.value.line()
    # another header value is another route: both at once
    other = run(intercepts.claim("web", "x-user", "bo", "127.0.0.1", 9001, "bo@desk", 42))
    taken = run(intercepts.claim("web", "x-user", "ana", "127.0.0.1", 9002, "bo@desk", 42, takeover=True))
    assert {i.id for i in store.intercepts()} == {other.id, taken.id}
    events = [e for e in store.events("web") if e["kind"] == "intercept-takeover"]
    assert events and events[-1]["evidence"]["previous"]["owner"] == "ana@laptop"
    with pytest.raises(NotFound):  # the old owner's next renewal learns it lost the route
        intercepts.renew(first.id)


def test_a_lease_not_renewed_lapses_and_the_sweep_removes_its_route(plane):
    intercepts, clock, gateway, store = plane
    run = asyncio.run
    row = run(intercepts.claim("web", "x-user", "ana", "127.0.0.1", 9000, "ana@laptop"))
    for _ in range(10):  # renewed every RENEW_S: kept for as long as that goes on
        clock.now += RENEW_S
        intercepts.renew(row.id)
        run(intercepts.sweep())
    assert [i.id for i in store.intercepts()] == [row.id]
    clock.now += LEASE_S - 0.01  # not renewed, not lapsed yet
    run(intercepts.sweep())
    assert store.intercepts()
    clock.now += 0.02
    run(intercepts.sweep())
    assert store.intercepts() == []
    assert personal_clusters(gateway.published[-1]) == set()
    assert any(e["kind"] == "intercept-lapsed" for e in store.events("web"))
    with pytest.raises(NotFound):
        intercepts.renew(row.id)
    # a lapsed lease is free: anyone may claim the match again
    run(intercepts.claim("web", "x-user", "ana", "127.0.0.1", 9001, "bo@desk"))


def test_leases_that_lapsed_while_no_daemon_ran_are_forgotten_at_start(plane):
    intercepts, clock, _, store = plane
    asyncio.run(intercepts.claim("web", "x-user", "ana", "127.0.0.1", 9000, "ana@laptop"))
    live = asyncio.run(intercepts.claim("web", "x-user", "bo", "127.0.0.1", 9001, "bo@desk"))
    clock.now += LEASE_S - 1
    intercepts.renew(live.id)
    clock.now += 2
    assert intercepts.sweep_stored() == 1
    assert [i.id for i in store.intercepts()] == [live.id]


def test_retarget_and_release(plane):
    intercepts, _, gateway, store = plane
    row = asyncio.run(intercepts.claim("web", "x-shiploop-dev", "ana", "127.0.0.1", 9000, "ana@laptop", kind="dev"))
    asyncio.run(intercepts.retarget(row.id, "127.0.0.1", 9100))
    cluster = next(c for c in gateway.published[-1].clusters if c.name == personal_cluster_name("web", row.id))
    assert cluster.endpoints[0].port == 9100
    asyncio.run(intercepts.release(row.id))
    assert store.intercepts() == [] and personal_clusters(gateway.published[-1]) == set()
    assert any(e["kind"] == "dev-released" for e in store.events("web"))


@pytest.mark.parametrize(
    ("header", "value", "host", "port", "why"),
    [
        ("x-user", "ana", "127.0.0.1", 8080, "gateway's own"),
        ("x-user", "ana", "laptop.local", 9000, "not an IP address"),
        ("bad header", "ana", "127.0.0.1", 9000, "header"),
        ("", "ana", "127.0.0.1", 9000, "every request"),
    ],
)
def test_claims_that_cannot_work_are_refused(plane, header, value, host, port, why):
    intercepts, _, gateway, _ = plane
    with pytest.raises(Invalid) as refused:
        asyncio.run(intercepts.claim("web", header, value, host, port, "ana@laptop"))
    assert why in refused.value.line()
    assert gateway.published == []


# -- the CLI's own checks, before it talks to a daemon ------------------------------------------


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    from shiploop.cli.main import app, err
    from shiploop.cli.usage import run_app

    with pytest.raises(SystemExit) as info:
        run_app(app, err, list(argv))
    _, stderr = capsys.readouterr()
    return int(info.value.code or 0), stderr


def test_all_asks_first_and_without_a_terminal_is_refused_with_the_command_that_confirms(capsys, monkeypatch):
    monkeypatch.setattr("sys.argv", ["shiploop", "intercept", "web", "--all", "--port", "9000"])
    code, stderr = run_cli(capsys, "intercept", "web", "--all", "--port", "9000")
    assert code == 2
    assert "needs confirmation" in stderr and "shiploop intercept web --all --port 9000 --yes" in stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["intercept", "web", "--port", "9000"], "either --header NAME=VALUE or --all"),
        (["intercept", "web", "-H", "x-user=ana", "--all", "--port", "9000"], "either --header NAME=VALUE or --all"),
        (["intercept", "web", "-H", "x-user=ana"], "either --port P or -- COMMAND"),
        (["intercept", "web", "-H", "x-user=ana", "--port", "9000", "--", "app"], "either --port P or -- COMMAND"),
        (["intercept", "web", "-H", "x-user", "--port", "9000"], "not NAME=VALUE"),
    ],
)
def test_intercept_needs_one_match_and_one_target(capsys, argv, message):
    code, stderr = run_cli(capsys, *argv)
    assert code == 2 and message in stderr


def test_with_option_rebuilds_the_command_line_with_the_option_before_the_command():
    from shiploop.cli.lease import with_option

    argv = ["intercept", "web", "-H", "x-user=ana b", "--", "npm", "run", "dev"]
    assert with_option(argv, "--takeover") == "shiploop intercept web -H 'x-user=ana b' --takeover -- npm run dev"


def test_a_personal_route_wins_over_an_experiments_assignment_and_carries_no_script(web_spec):
    """A request with the developer's header never reaches the experiment's main route: it is
    not assigned a variant, so it is neither exposure nor evidence of the experiment."""
    from shiploop.server.routing import ExperimentRouting

    experiment = ExperimentRouting("salt", "header", "x-user-id", 50.0, "aaaa", "bbbb")
    placements = (Placement("aaaa", Track.STABLE, 100), Placement("bbbb", Track.CANARY, 0))
    personal = (PersonalRoute("ab12", "x-user", "ana", "127.0.0.1", 9000),)
    state = build_routing_state(
        [ServiceRouting(web_spec, placements, (), experiment, personal)], lambda s, v: [1000], 8080
    )
    names = [r.name for r in state.routes]
    assigned = [r for r in state.routes if r.assignment is not None]
    assert assigned, "the experiment is running"
    mine = next(r for r in state.routes if r.name == "web-0-pab12")
    assert mine.assignment is None
    assert all(names.index("web-0-pab12") < names.index(r.name) for r in assigned if r.name.startswith("web-0"))
