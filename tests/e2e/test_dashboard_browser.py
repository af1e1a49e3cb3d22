"""The dashboard in a real browser (headless Chromium) during a real rollout under load.

Screenshots go to test-artifacts/dashboard/ at the repository root (git-ignored); the test prints where.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shiploop.loadgen import background_load
from tests.conftest import wait_until
from tests.daemon_helpers import Project

ARTIFACTS = Path(__file__).parents[2] / "test-artifacts" / "dashboard"
POLICY = """rollout:
  steps: [10, 30, 100]
  min_step: 6s
  max_step: 1m
  min_samples: 40
"""
EXPERIMENT = """experiment:
  hypothesis: "The one-field form raises signups per visitor"
  unit: {cookie: shiploop_uid}
  metrics: {primary: {event: signup}}
  minimum_detectable_effect: 0.05
"""


def find_chromium() -> str | None:
    for candidate in (os.environ.get("SHIPLOOP_CHROMIUM"), "/usr/bin/chromium", "chromium", "chromium-browser"):
        if candidate and (path := shutil.which(candidate)):
            return path
    return None


@pytest.fixture
def browser() -> Iterator[Any]:
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("no chromium found (Debian: apt-get install chromium; or set SHIPLOOP_CHROMIUM)")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is in the test extras: pip install -e '.[test]'"
    )
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, headless=True)
        try:
            yield b
        finally:
            b.close()




def weights(page: Any) -> dict[str, int]:
    """track -> weight as the services page shows it now."""
    return dict(
        page.eval_on_selector_all(
            "[data-testid=version-row]",
            "rows => rows.map(r => [r.dataset.track, +r.querySelector('[data-testid=weight]').textContent])",
        )
    )


def test_dashboard_shows_a_failing_canary_shifting_and_rolled_back_live(project: Project, browser: Any):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots: {ARTIFACTS}")
    project.add_service("echo", "/echo/", extra=POLICY)
    project.cli("up", "--detach", "--port", str(project.port))
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))

    # Sign in through the one-time URL: it lands on the services page with a session.
    page.goto(project.cli("dashboard").stdout.strip())
    page.wait_for_selector("[data-testid=version-row][data-track=stable]")
    assert page.inner_text("[data-testid=signin]") == "signed in"
    assert weights(page) == {"stable": 100}

    project.set_env("echo", {"FAIL_RATE": "0.1"})
    with background_load(f"{project.url}/echo/x", rps=100):
        project.cli("rollout", "echo")
        # The page was never reloaded: polling brings the candidate in beside stable.
        wait_until(lambda: 0 < weights(page).get("canary", 0) < 100, 20, interval=0.2, what="canary weight on the page")
        seen = weights(page)
        assert seen["stable"] + seen["canary"] == 100, seen
        page.screenshot(path=str(ARTIFACTS / "services-during-rollout.png"), full_page=True)

        page.goto(page.url.split("#")[0] + "#/rollout/echo")
        page.wait_for_selector("[data-testid=summary]")
        page.wait_for_selector("[data-testid=rollout-state]")
        # The actions are live for a signed-in reader of an active rollout.
        assert page.is_enabled("button[data-action=abort]") or "rolled back" in page.inner_text("h1")
        page.wait_for_selector("[data-testid=event][data-kind=rollout-rolled-back]", timeout=60_000)
        page.wait_for_selector("[data-testid=guardrail]")
        page.screenshot(path=str(ARTIFACTS / "rollout-rolled-back.png"), full_page=True)

        assert page.inner_text("[data-testid=rollout-state]") == "rolled back"
        summary = page.inner_text("[data-testid=summary]")
        assert summary.startswith("rolled back:") and "all traffic on" in summary, summary
        # The decision's evidence is one click away in the events list.
        page.click("[data-testid=event][data-kind=rollout-rolled-back] details summary")
        assert '"guardrails"' in page.inner_text("[data-testid=event][data-kind=rollout-rolled-back] pre")
        assert not page.is_enabled("button[data-action=abort]")  # nothing left to act on

        page.goto(page.url.split("#")[0] + "#/")
        wait_until(
            lambda: weights(page).get("stable") == 100 and "canary" not in weights(page),
            20,
            interval=0.2,
            what="all traffic back on stable on the page",
        )
        # The charts carry the last minutes of traffic (the load still runs): stable's lines in all three.
        page.wait_for_function(
            "[...document.querySelectorAll('[data-service=echo] svg path')]"
            ".filter(p => p.getAttribute('d').includes('L')).length >= 3"
        )
        page.screenshot(path=str(ARTIFACTS / "services-after-rollback.png"), full_page=True)
    page.goto(page.url.split("#")[0] + "#/history/echo")
    page.wait_for_selector("[data-testid=history-row]")
    assert "rolled back" in page.inner_text("[data-testid=history-row]")
    page.screenshot(path=str(ARTIFACTS / "history.png"), full_page=True)
    page.goto(page.url.split("#")[0] + "#/events")
    page.wait_for_selector("[data-testid=event][data-kind=rollout-rolled-back]")
    page.screenshot(path=str(ARTIFACTS / "events.png"), full_page=True)
    assert errors == [], errors


def test_signed_in_page_pauses_resumes_and_aborts_a_rollout_and_a_reader_cannot(project: Project, browser: Any):
    project.add_service("echo", "/echo/", extra="rollout:\n  steps: [10, 50, 100]\n  min_step: 5m\n  max_step: 10m\n")
    project.cli("up", "--detach", "--port", str(project.port))
    project.set_env("echo", {"GREETING": "v2"})
    project.cli("rollout", "echo")
    api = f"http://127.0.0.1:{project.daemon_info()['api_port']}"

    # A reader without the login sees the rollout but cannot act on it.
    reader = browser.new_page()
    reader.goto(f"{api}/#/rollout/echo")
    reader.wait_for_selector("[data-testid=rollout-state]")
    assert reader.inner_text("[data-testid=signin]") == "read-only"
    assert not reader.is_enabled("button[data-action=pause]")
    # Even a request forged from its console (no CSRF token, no cookie) is refused.
    status = reader.evaluate(
        "fetch('/v1/dashboard/services/echo/rollout/abort', {method: 'POST', headers: {'X-Shiploop-CSRF': 'x'}})"
        ".then(r => r.status)"
    )
    assert status == 401

    page = browser.new_page()
    page.goto(project.cli("dashboard").stdout.strip())
    page.goto(f"{api}/#/rollout/echo")

    def state() -> str:
        return str(page.inner_text("[data-testid=rollout-state]"))

    wait_until(lambda: state() == "progressing", 20, interval=0.2, what="rollout progressing on the page")
    page.click("button[data-action=pause]")
    wait_until(lambda: state() == "paused", 10, interval=0.2, what="paused from the page")
    assert json.loads(project.cli("rollout", "status", "echo", "--json").stdout)["state"] == "paused"
    page.click("button[data-action=resume]")
    wait_until(lambda: state() == "progressing", 10, interval=0.2, what="resumed from the page")
    page.click("button[data-action=abort]")
    wait_until(lambda: state() == "aborted", 20, interval=0.2, what="aborted from the page")
    page.wait_for_selector("[data-testid=event][data-kind=rollout-aborted]")
    assert "aborted by hand" in page.inner_text("[data-testid=summary]")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "rollout-aborted-from-page.png"), full_page=True)
    # The reader's page caught up without a reload.
    wait_until(lambda: reader.inner_text("[data-testid=rollout-state]") == "aborted", 10, interval=0.2, what="reader")

    # An experiment on the same page: the report's sections (hypothesis, decision, lift chart), live.
    wait_until(lambda: "canary" not in project.versions("echo"), 20, what="the aborted candidate to stop")
    svc = project.root / "echo" / "service.yaml"
    svc.write_text(svc.read_text() + EXPERIMENT)
    project.cli("experiment", "start", "echo")
    reader.goto(f"{api}/#/experiment/echo")
    reader.wait_for_selector("[data-testid=experiment-lift-chart]")
    assert "one-field form" in reader.inner_text("[data-testid=experiment-hypothesis]")
    assert reader.inner_text("[data-testid=experiment-decision]").startswith("running: Continue")
    reader.screenshot(path=str(ARTIFACTS / "experiment.png"), full_page=True)

    # A personal route on the services page: who holds what, to where.
    auth = project.write_auth()
    claim = {"header": "x-dev", "value": "ana", "port": 9, "owner": "ana@laptop"}
    held = reader.request.post(f"{api}/v1/services/echo/intercepts", data=claim, headers=auth)
    assert held.ok, held.text()
    reader.goto(f"{api}/#/")
    reader.wait_for_selector("[data-testid=intercept-row]")
    row = reader.inner_text("[data-testid=intercept-row]")
    assert "x-dev: ana" in row and "127.0.0.1:9" in row and "ana@laptop" in row, row
    reader.request.delete(f"{api}/v1/intercepts/{held.json()['id']}", headers=auth)
