import pytest

from shiploop.store import DeploymentRow, Store


def test_store_transaction_is_atomic_and_nests(tmp_path):
    store = Store(tmp_path / "state.db")
    store.upsert_deployment(DeploymentRow("web", "a", "stable", 100, 1, {}, "running", 0.0))
    with pytest.raises(RuntimeError), store.transaction():
        store.set_weights("web", {"a": 40})  # nested transaction
        store.put("k", "v")
        raise RuntimeError("crash halfway")
    assert store.deployments("web")[0].weight == 100 and store.get("k") is None
    with store.transaction():
        store.set_weights("web", {"a": 70})
    assert Store(tmp_path / "state.db").deployments("web")[0].weight == 70
