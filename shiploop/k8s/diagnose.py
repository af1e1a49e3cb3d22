"""Why a Deployment is not ready, in one line, from the API's documented shapes (plain dicts).

Pure: the Deployment and its pods as the API returns them, and a way to read a
container's last log line; no client, so the cases are tested on recorded shapes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Obj = dict[str, Any]
LastLog = Callable[[str, str], str | None]  # (pod, container) -> the last line of its previous run

_PULL = ("ImagePullBackOff", "ErrImagePull", "InvalidImageName")
_MISSING_REF = ("not found",)


def deployment_ready(d: Obj) -> bool:
    spec, status = d.get("spec") or {}, d.get("status") or {}
    want = spec.get("replicas", 1)
    meta = d.get("metadata") or {}
    return (
        status.get("observedGeneration", 0) >= meta.get("generation", 0)
        and status.get("updatedReplicas", 0) == want
        and status.get("availableReplicas", 0) == want
        and status.get("replicas", 0) == want
    )


def _statuses(pod: Obj) -> list[Obj]:
    status = pod.get("status") or {}
    return list(status.get("initContainerStatuses") or []) + list(status.get("containerStatuses") or [])


def diagnose(d: Obj, pods: list[Obj], last_log: LastLog, *, final: bool = False) -> str | None:
    """A line naming what keeps `d` from being ready, or None while it is only on its way.

    `final`: the wait is over, so report what is merely slow too (unschedulable pods, not ready)."""
    name = (d.get("metadata") or {}).get("name", "?")
    for pod in pods:
        pname = (pod.get("metadata") or {}).get("name", "?")
        for cs in _statuses(pod):
            cname = cs.get("name", "?")
            waiting = (cs.get("state") or {}).get("waiting") or {}
            reason, message = waiting.get("reason"), waiting.get("message", "")
            last = (cs.get("lastState") or {}).get("terminated") or {}
            if reason in _PULL:
                return f"{name}: pod {pname} cannot pull image {cs.get('image', '?')} ({reason}: {message})"
            if last.get("reason") == "OOMKilled":
                return (
                    f"{name}: container {cname} of pod {pname} was OOMKilled (exit {last.get('exitCode', '?')}); "
                    "raise memory_limit in the profile's resources"
                )
            if reason == "CrashLoopBackOff":
                line = last_log(pname, cname)
                said = f"; its last log line: {line}" if line else "; it logged nothing"
                return (
                    f"{name}: container {cname} of pod {pname} keeps crashing (CrashLoopBackOff, last exit "
                    f"{last.get('exitCode', '?')}){said}"
                )
            if reason == "CreateContainerConfigError" and any(m in message for m in _MISSING_REF):
                return f"{name}: pod {pname} refers to a missing Secret or ConfigMap ({message})"
    for cond in (d.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return f"{name}: rollout deadline exceeded ({cond.get('message', '')})"
    if not final:
        return None
    for pod in pods:
        for cond in (pod.get("status") or {}).get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
                pname = (pod.get("metadata") or {}).get("name", "?")
                return f"{name}: pod {pname} cannot be scheduled ({cond.get('reason', '')}: {cond.get('message', '')})"
    status = d.get("status") or {}
    return (
        f"{name}: {status.get('availableReplicas', 0)} of {(d.get('spec') or {}).get('replicas', 1)} replicas "
        "available when the wait ended"
    )
