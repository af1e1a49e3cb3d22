"""The daemon's /metrics: families from a snapshot, the text writer against prometheus_client's own,
and decisions counted from the rollout events as they are added."""

from __future__ import annotations

import json
import time
from pathlib import Path

from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from shiploop.naming import DeploymentState, RolloutState, Track
from shiploop.store import DeploymentRow, Store
from shiploop.telemetry.collector import exposition, registry_for
from shiploop.telemetry.gather import StateReader
from shiploop.telemetry.snapshot import GuardrailSample, HistogramSample, RolloutSample, Snapshot, VersionSample
from tests.plane_fakes import FakeGateway, FakePlane, FakeReplica, FakeRuntime


def snapshot(service: str = "web") -> Snapshot:
    return Snapshot(
        versions=(
            VersionSample(service, "aaa", "stable", 90, 2, 2, 0),
            VersionSample(service, "bbb", "canary", 10, 1, 2, 3),
        ),
        rollouts=(
            RolloutSample(
                service,
                7,
                "bbb",
                "aaa",
                "progressing",
                1,
                (
                    GuardrailSample("error_rate", 0.001, -0.002, 0.004, 0.002),
                    GuardrailSample("latency_p95", None, None, None, 0.05),
                ),
                {"advance": 1},
            ),
        ),
        publish_seconds=HistogramSample((0.01, 0.1), (1, 3), 4, 1.25),
        envoy_rejections=2,
        envoy_restarts=1,
    )


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value for f in text_string_to_metric_families(text) for s in f.samples
    }


def test_text_is_byte_for_byte_what_prometheus_client_writes():
    # Label values that need escaping, and every family type we export.
    registry = registry_for(lambda: snapshot('we"b\\x\n'))
    assert exposition(registry) == generate_latest(registry)
    assert exposition(registry) == generate_latest(registry)  # again: from the kept label texts


def test_families_carry_the_documented_names_and_labels():
    got = samples(exposition(registry_for(snapshot)).decode())
    v = frozenset({("service", "web"), ("version", "bbb"), ("track", "canary")})
    assert got[("shiploop_route_weight_percent", v)] == 10
    assert got[("shiploop_replicas", v | {("state", "ready")})] == 1
    assert got[("shiploop_replicas", v | {("state", "total")})] == 2
    assert got[("shiploop_replica_restarts_total", v)] == 3
    r = frozenset({("service", "web"), ("rollout", "7"), ("candidate", "bbb"), ("baseline", "aaa")})
    assert got[("shiploop_rollout_step", r)] == 1
    states = {dict(ls)["state"]: val for (n, ls), val in got.items() if n == "shiploop_rollout_state"}
    assert states == {str(s): (1.0 if s == RolloutState.PROGRESSING else 0.0) for s in RolloutState}
    assert got[("shiploop_rollout_decisions_total", r | {("outcome", "advance")})] == 1
    assert got[("shiploop_rollout_decisions_total", r | {("outcome", "rolled_back")})] == 0
    g = frozenset({("service", "web"), ("rollout", "7"), ("guardrail", "error_rate")})
    assert got[("shiploop_guardrail_estimate", g)] == 0.001
    assert got[("shiploop_guardrail_lower_bound", g)] == -0.002
    assert got[("shiploop_guardrail_upper_bound", g)] == 0.004
    assert got[("shiploop_guardrail_tolerance", g)] == 0.002
    # No estimate yet: no series rather than a made-up 0; the tolerance is known.
    lat = frozenset({("service", "web"), ("rollout", "7"), ("guardrail", "latency_p95")})
    assert ("shiploop_guardrail_estimate", lat) not in got
    assert got[("shiploop_guardrail_tolerance", lat)] == 0.05
    assert got[("shiploop_publish_seconds_bucket", frozenset({("le", "0.1")}))] == 3
    assert got[("shiploop_publish_seconds_bucket", frozenset({("le", "+Inf")}))] == 4
    assert got[("shiploop_publish_seconds_count", frozenset())] == 4
    assert got[("shiploop_envoy_rejections_total", frozenset())] == 2
    assert got[("shiploop_envoy_restarts_total", frozenset())] == 1


def test_reader_counts_decisions_as_events_arrive_and_keeps_ended_rollouts_an_hour(tmp_path: Path):
    store = Store(tmp_path / "state.db")
    now = time.time()
    for svc, version, track in (
        ("web", "aaa", Track.STABLE),
        ("web", "bbb", Track.CANARY),
        ("api", "ccc", Track.STABLE),
    ):
        store.upsert_deployment(DeploymentRow(svc, version, track, 50, 2, {}, DeploymentState.RUNNING, now))
    runtime = FakeRuntime([FakeReplica("web", "bbb", True, 1), FakeReplica("web", "bbb", False, 2)])
    data = json.dumps({"policy": {}, "steps": []})
    old = store.insert_rollout("api", "ccc", "zzz", RolloutState.PROMOTED, data, now - 7200)
    rid = store.insert_rollout("web", "bbb", "aaa", RolloutState.PROGRESSING, data, now)
    store.event("web", "rollout-advance", "x", {"rollout": rid})
    reader = StateReader(FakePlane(store, runtime, FakeGateway()))  # type: ignore[arg-type]  # what it reads
    snap = reader.snapshot()
    assert [r.rollout for r in snap.rollouts] == [rid]  # the one that ended two hours ago is not exported
    assert snap.rollouts[0].decisions == {"advance": 1}
    canary = next(v for v in snap.versions if v.version == "bbb")
    assert (canary.ready, canary.total, canary.restarts, canary.track) == (1, 2, 3, "canary")
    store.event("web", "rollout-advance", "x", {"rollout": rid})
    store.event("web", "rollout-rolled-back", "x", {"rollout": rid})
    store.event("web", "deployed", "not a decision", {"rollout": rid})
    assert reader.snapshot().rollouts[0].decisions == {"advance": 2, "rolled_back": 1}
    assert reader.snapshot().rollouts[0].decisions == {"advance": 2, "rolled_back": 1}  # counted once
    assert old != rid
    store.close()
