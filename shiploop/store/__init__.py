from shiploop.store.db import DeploymentRow, ReplicaRow, RolloutRow, Store
from shiploop.store.experiments import ArmSums, ArmTraffic, ExperimentRow, Exposure

__all__ = ["ArmSums", "ArmTraffic", "DeploymentRow", "ExperimentRow", "Exposure", "ReplicaRow", "RolloutRow", "Store"]
