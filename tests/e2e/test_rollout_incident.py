"""A shared incident during a rollout: both versions fail, the candidate is not to blame.

Issue 7: with counts pooled since the rollout began, a shared incident while
the split moved from 20% to 50% looked like a difference between the versions,
and an identical candidate was rolled back. The guardrails now compare the
versions within each step.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from shiploop.loadgen import background_load
from tests.conftest import wait_until
from tests.daemon_helpers import Project

# Three 10 s steps: the 15 s incident starts 5 s into the 20% step and ends as the 100% step begins.
STEP_S = 10
INCIDENT_S = 15
POLICY = f"""rollout:
  steps: [20, 50, 100]
  min_step: {STEP_S}s
  max_step: 30s
  min_samples: 40
"""




def rollout_state(project: Project) -> dict[str, Any]:
    """What `shiploop rollout status echo --json` prints, from the API."""
    return dict(project.api_get("/v1/services/echo/rollout"))


@pytest.mark.slow
def test_identical_candidate_survives_a_shared_incident_in_the_middle(project: Project, tmp_path: Path):
    incident = tmp_path / "incident"  # while it exists, every version fails 20% of requests
    project.add_service("echo", "/echo/", env={"FAIL_FILE": str(incident)}, extra=POLICY)
    project.cli("up", "--detach", "--port", str(project.port))
    (project.root / "echo" / "README.txt").write_text("content differs, behaviour does not\n")
    with background_load(f"{project.url}/echo/x", rps=100) as load:
        load.wait_until(lambda r: r.total >= 100, 10)
        # `rollout plan` reads the policy and the stable version's measured traffic.
        ok = lambda: project.cli("rollout", "plan", "echo", "--json", check=False).returncode == 0  # noqa: E731
        wait_until(ok, 15, interval=0.5, what="the stable version's measured traffic")
        plan = json.loads(project.cli("rollout", "plan", "echo", "--json").stdout)
        assert [s["weight"] for s in plan["steps"]] == [20, 50, 100] and 50 < plan["rps"] < 150, plan
        assert plan["warnings"] == [] and plan["smallest_regression"] > 0.002
        project.cli("rollout", "echo")
        wait_until(
            lambda: (rollout_state(project).get("last") or {}).get("elapsed_s", 0) >= STEP_S / 2,
            30,
            interval=0.5,
            what="half way into the first step",
        )
        incident.write_text("0.2")
        began = time.monotonic()
        wait_until(lambda: time.monotonic() - began >= INCIDENT_S, INCIDENT_S + 5, interval=0.2, what="the incident")
        during = rollout_state(project)
        incident.unlink()
        r = project.cli("rollout", "status", "echo", "--wait", "--json", check=False, timeout=120)
        report = load.report()
    assert during["state"] == "progressing" and during["step"] >= 1, during  # the incident spanned a step change
    assert r.returncode == 0, r.stdout + r.stderr
    outcome = json.loads(r.stdout)
    assert outcome["state"] == "promoted", outcome["reason"]
    # The incident was real: about 20% of 15 s at 100 rps (300) failed, on both versions.
    assert report.status_counts.get(500, 0) >= 200, report.render()
