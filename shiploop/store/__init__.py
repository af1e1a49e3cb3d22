from shiploop.store.db import DeploymentRow, ReplicaRow, RolloutRow, Store

__all__ = ["DeploymentRow", "ReplicaRow", "RolloutRow", "Store"]
