from shiploop.store.db import DeploymentRow, InterceptRow, ReplicaRow, RolloutRow, Store
from shiploop.store.experiments import ArmSums, ArmTraffic, ExperimentRow, Exposure

__all__ = [
    "ArmSums",
    "ArmTraffic",
    "DeploymentRow",
    "ExperimentRow",
    "Exposure",
    "InterceptRow",
    "ReplicaRow",
    "RolloutRow",
    "Store",
]
