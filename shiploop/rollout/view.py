"""A rollout as people and scripts see it: where it stands, how far each step got, and what moves it on.

The same numbers back the human rendering (`shiploop rollout status`) and
`--json`. Rates and their intervals are fractions (0.012 = 1.2%); a
guardrail's estimate, interval and tolerance are all differences of rates, in
the same unit. A rate over zero requests is None, never 0.
"""

from __future__ import annotations

from typing import Any

from shiploop.naming import RolloutState
from shiploop.rollout.readings import CountersReset
from shiploop.rollout.record import RolloutRecord


def _rate(events: int, trials: int) -> float | None:
    return events / trials if trials else None


def _arm(counts: dict[str, int] | None) -> dict[str, Any] | None:
    if counts is None:
        return None
    return {**counts, "error_rate": _rate(counts["errors"], counts["requests"])}


def _steps(r: RolloutRecord, now: float) -> list[dict[str, Any]]:
    policy = r.policy
    last = r.last or {}
    out = []
    for s in r.steps:
        current = s is r.current and s.ended_at is None
        cand: dict[str, int] | None = None
        base: dict[str, int] | None = None
        if s.end is not None:
            try:
                stratum = s.stratum()
                cand = {"requests": stratum.candidate.requests, "errors": stratum.candidate.errors}
                base = {"requests": stratum.baseline.requests, "errors": stratum.baseline.errors}
            except CountersReset:
                pass  # the evidence of this step was lost; the reason says so
        elif current and (last.get("step") or {}).get("index") == s.index:
            cand, base = last["step"]["candidate"], last["step"]["baseline"]
        end = s.ended_at if s.ended_at is not None else now
        out.append(
            {
                "index": s.index,
                "weight": s.weight,
                "current": current,
                "started_at": s.started_at,
                "ended_at": s.ended_at,
                "elapsed_s": round(end - s.clock_from, 1),
                "min_step_s": policy.min_step,
                "max_step_s": policy.max_step,
                "min_samples": policy.min_samples,
                "candidate": _arm(cand),
                "baseline": _arm(base),
            }
        )
    return out


def _guardrails(last: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for g in last.get("guardrails", []):
        cand, base = g["candidate"], g["baseline"]
        out.append(
            {
                "name": g["name"],
                "detail": g.get("detail", ""),
                "verdict": g.get("verdict") or ("harm" if g["harmful"] else "ok" if g["noninferior"] else "watching"),
                "candidate_rate": _rate(cand["events"], cand["trials"]),
                "baseline_rate": _rate(base["events"], base["trials"]),
                "candidate": cand,
                "baseline": base,
                # candidate minus baseline, its anytime-valid interval and the tolerance: one unit
                "estimate": g["estimate"] if cand["trials"] and base["trials"] else None,
                "interval": [g["lower_bound"], g["upper_bound"]] if cand["trials"] and base["trials"] else None,
                "tolerance": g["tolerance"],
                "confidence": 1.0 - g["alpha"],
            }
        )
    return out


def _arm_word(r: RolloutRecord) -> str:
    return {"canary": "canary", "mirror": "shadow", "ab": "variant"}[r.policy.strategy]


def _explain(r: RolloutRecord, now: float, sample_url: str | None) -> tuple[str, list[str]]:
    """A plain sentence for where the rollout stands, and the commands that move it on."""
    svc = r.service
    steer = [f"shiploop rollout resume {svc}", f"shiploop rollout promote {svc}", f"shiploop rollout abort {svc}"]
    state = r.state
    step = f"step {r.step + 1}/{r.step_count}"
    if state == RolloutState.PROMOTED:
        return f"promoted: {r.candidate} is stable ({r.reason})", []
    if state in (RolloutState.ROLLED_BACK, RolloutState.FAILED, RolloutState.ABORTED):
        return f"{state.replace('_', ' ')}: {r.reason}; all traffic on {r.baseline}", [f"shiploop history {svc}"]
    if state in (RolloutState.PROMOTING, RolloutState.ROLLING_BACK):
        return f"{state.replace('_', ' ')}: {r.reason}", []
    if state == RolloutState.PENDING:
        return "starting: deploying the candidate and taking the first readings", [f"shiploop rollout abort {svc}"]
    if state == RolloutState.HELD:
        return f"held at {step}, waiting for you: {r.reason}", steer
    if state == RolloutState.PAUSED:
        return f"paused by hand at {step}; traffic stays where it is", steer
    last = r.last or {}
    if not last:
        return f"watching {step}: no reading judged yet", []
    if r.holding == "srm":
        return (
            f"holding at {step}: {last.get('reason')}",
            ["shiploop status", f"shiploop rollout abort {svc}", f"shiploop rollout promote {svc}"],
        )
    if r.holding == "data_error":
        return (
            f"holding at {step}: {last.get('reason')}",
            [f"shiploop logs {svc} --version {r.candidate}", f"shiploop rollout abort {svc}"],
        )
    progress = last.get("step") or {}
    requests = (progress.get("candidate") or {}).get("requests", 0)
    need = r.policy.min_samples
    elapsed = progress.get("elapsed_s", 0.0)
    if requests < need:
        sentence = f"waiting for traffic: {requests} of {need} {_arm_word(r)} requests"
        if sample_url is None:
            return sentence, []
        # Enough arrivals for min_samples at this weight in about 30 s of the minute suggested.
        share = max(r.weight, 1) / 100 if r.policy.strategy == "canary" else 1.0
        rps = max(10, min(1000, round(need / share / 30 + 0.5)))
        return sentence + f"; try: shiploop load {sample_url} --rps {rps} --duration 60s", []
    if elapsed < r.policy.min_step:
        return f"watching {step}: no harm so far; {elapsed:.0f} of {r.policy.min_step:g} s at this step", []
    return f"watching {step}: {last.get('reason')}", []


def rollout_view(r: RolloutRecord, now: float, sample_url: str | None = None) -> dict[str, Any]:
    policy = r.policy
    last = r.last or {}
    summary, commands = _explain(r, now, sample_url)
    return {
        "id": r.id,
        "service": r.service,
        "candidate": r.candidate,
        "baseline": r.baseline,
        "state": str(r.state),
        "step": r.step,
        "steps": policy.steps,
        "strategy": policy.strategy,
        "weight": r.weight,
        "started_at": r.started_at,
        "updated_at": r.updated_at,
        "reason": r.reason,
        "rule": r.rule,
        "holding": r.holding,
        "summary": summary,
        "next": commands,
        "policy": {
            "min_step_s": policy.min_step,
            "max_step_s": policy.max_step,
            "min_samples": policy.min_samples,
            "on_no_data": policy.on_no_data,
            "on_inconclusive": policy.on_inconclusive,
            "alpha": policy.alpha,
        },
        "progress": _steps(r, now),
        "guardrails": _guardrails(last),
        "last": r.last,
    }
