from shiploop.store.db import DeploymentRow, ReplicaRow, Store

__all__ = ["DeploymentRow", "ReplicaRow", "Store"]
