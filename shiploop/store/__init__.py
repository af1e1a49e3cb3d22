from shiploop.store.db import DeploymentRow, InterceptRow, ReplicaRow, RolloutRow, Store
from shiploop.store.experiments import AppBatchSums, ArmSums, ArmTraffic, ExperimentRow, Exposure, PreSums

__all__ = [
    "AppBatchSums",
    "ArmSums",
    "ArmTraffic",
    "DeploymentRow",
    "ExperimentRow",
    "Exposure",
    "PreSums",
    "InterceptRow",
    "ReplicaRow",
    "RolloutRow",
    "Store",
]
