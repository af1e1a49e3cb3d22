"""The controller's records in one ConfigMap (k8s/cluster_store.py), on an in-memory ConfigMap: ids, a
transaction as one write, events with ids to follow, and ended rollouts trimmed to KEEP_ENDED per service."""

from __future__ import annotations

import json
from collections.abc import Callable

from shiploop.k8s.cluster_store import KEEP_ENDED, ClusterRolloutStore
from shiploop.naming import RolloutState


class MemoryConfigMaps:
    namespace = "shop"

    def __init__(self) -> None:
        self.data: dict[str, str] = {"other": "kept"}
        self.writes = 0

    def read(self, name: str) -> dict[str, str]:
        return dict(self.data)

    def change(self, name: str, change: Callable[[dict[str, str]], dict[str, str]]) -> dict[str, str]:
        self.data = change(dict(self.data))
        self.writes += 1
        return self.data


def test_records_events_and_trimming():
    cms = MemoryConfigMaps()
    store = ClusterRolloutStore(cms)  # type: ignore[arg-type]
    body = json.dumps({"policy": {}, "steps": []})
    ids = [store.insert_rollout("web", f"c{i}", "s", RolloutState.PENDING, body, float(i)) for i in range(3)]
    assert ids == [1, 2, 3]
    before = cms.writes
    with store.transaction():  # as the controller's _save: the update and its event in one write
        store.update_rollout(3, RolloutState.PROGRESSING, 0, body, 10.0, None)
        store.event("web", "rollout-step", "step 1/3", {"rollout": 3}, ts=10.0)
        store.event("web", "daemon-only", "not a rollout's", None, ts=10.0)
    assert cms.writes == before + 1
    row = store.rollout(3)
    assert row is not None and row.state == RolloutState.PROGRESSING and row.updated_at == 10.0
    (event,) = store.events("web")
    assert event["kind"] == "rollout-step" and event["id"] == 3_000_001
    assert [r.id for r in store.rollouts_in([RolloutState.PENDING, RolloutState.PROGRESSING])] == [1, 2, 3]
    assert [r.id for r in store.rollouts("web", limit=2)] == [3, 2]

    # Many ended rollouts: the newest KEEP_ENDED are kept, the active one always, and keys not ours.
    for i in range(KEEP_ENDED + 5):
        rid = store.insert_rollout("web", f"d{i}", "s", RolloutState.PENDING, body, 20.0 + i)
        store.update_rollout(rid, RolloutState.ROLLED_BACK, 0, body, 20.0 + i, "harm")
    kept = store.rollouts("web", limit=100)
    assert store.rollout(3) is not None  # still progressing
    ended = [r for r in kept if r.state == RolloutState.ROLLED_BACK]
    assert len(ended) == KEEP_ENDED and ended[0].candidate == f"d{KEEP_ENDED + 4}"
    assert cms.data["other"] == "kept"
    assert max(r.id for r in kept) == 3 + KEEP_ENDED + 5  # ids keep counting past trimmed ones
