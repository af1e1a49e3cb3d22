"""Names shared by every layer: tracks, deployment and rollout states, Envoy cluster names.

They were plain strings repeated across five files; one StrEnum each keeps them
spelled once. StrEnum members compare equal to their strings, so rows read
back from SQLite (plain text) still match.
"""

from __future__ import annotations

from enum import StrEnum


class Track(StrEnum):
    """The role of a version in the router."""

    STABLE = "stable"
    CANARY = "canary"
    SHADOW = "shadow"  # gets a copy of the traffic (dark launch); its answers are dropped
    RETIRING = "retiring"  # out of the routes, draining before it stops


class DeploymentState(StrEnum):
    RUNNING = "running"
    DRAINING = "draining"


class RolloutState(StrEnum):
    PENDING = "pending"
    PROGRESSING = "progressing"
    PAUSED = "paused"
    HELD = "held"  # waits for a person: resume, promote or abort
    PROMOTING = "promoting"  # decided, traffic not yet moved (a restart finishes it)
    ROLLING_BACK = "rolling_back"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"
    ABORTED = "aborted"


# A rollout in one of these states owns its service's traffic.
ACTIVE_ROLLOUT_STATES: tuple[RolloutState, ...] = (
    RolloutState.PENDING,
    RolloutState.PROGRESSING,
    RolloutState.PAUSED,
    RolloutState.HELD,
)


def cluster_name(service: str, version: str) -> str:
    # Service names never hold "_", so the split back is unambiguous.
    return f"{service}_{version}"
