"""The rollout rows behind Store methods: written, updated, found by service and by state."""

from __future__ import annotations

from pathlib import Path

from shiploop.naming import ACTIVE_ROLLOUT_STATES, RolloutState
from shiploop.store import Store


def test_rollout_rows_round_trip_and_are_found_by_state(tmp_path: Path):
    store = Store(tmp_path / "state.db")
    first = store.insert_rollout("web", "v2", "v1", RolloutState.PENDING, '{"policy": {}}', 10.0)
    second = store.insert_rollout("api", "a2", "a1", RolloutState.PENDING, "{}", 11.0)
    store.update_rollout(first, RolloutState.ROLLED_BACK, 2, '{"policy": {}, "rule": "harm"}', 20.0, "harm: ...")
    row = store.rollout(first)
    assert row is not None
    assert (row.state, row.step, row.data["rule"], row.updated_at, row.outcome_reason) == (
        "rolled_back",
        2,
        "harm",
        20.0,
        "harm: ...",
    )
    assert row.started_at == 10.0
    assert [r.id for r in store.rollouts_in(ACTIVE_ROLLOUT_STATES)] == [second]
    third = store.insert_rollout("web", "v3", "v1", RolloutState.PENDING, "{}", 30.0)
    assert [r.id for r in store.rollouts("web")] == [third, first]  # newest first
    assert [r.id for r in store.rollouts("web", limit=1)] == [third]
    assert store.rollout(999) is None
