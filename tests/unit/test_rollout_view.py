"""`rollout status` as people read it: the numbers of the daemon's view, in plain words, no jargon."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from shiploop.cli import rollout_view
from tests.unit.rollout_fakes import CANDIDATE, SERVICE, Harness


def text_of(view: dict) -> str:
    console = Console(width=200, record=True, force_terminal=False)
    console.print(rollout_view.render(view))
    return console.export_text()


def test_waiting_for_traffic_says_so_and_how_to_send_some(tmp_path: Path):
    h = Harness(tmp_path)
    h.traffic.rps = 2
    h.start()
    h.run(2)
    view = h.view()
    out = text_of(view)
    assert "waiting for traffic: " in out and " of 50 canary requests" in out
    assert "try: shiploop load http://127.0.0.1:8080/web/ --rps " in out
    assert view["guardrails"][0]["candidate"]["trials"] == 0
    assert "- (0/0)" in out and "0.00% (0/0)" not in out  # no rate over zero requests
    assert "Λ" not in out
    (step,) = view["progress"]
    assert step["min_samples"] == 50 and step["min_step_s"] == 2.0 and step["max_step_s"] == 10.0


def test_a_held_rollout_names_the_commands_that_move_it_on(tmp_path: Path):
    h = Harness(tmp_path)
    h.traffic.rps = 0
    h.start()
    h.run_to_end()
    out = text_of(h.view())
    assert "held at step 1/3, waiting for you: no usable data after" in out
    for command in ("resume", "promote", "abort"):
        assert f"shiploop rollout {command} {SERVICE}" in out


def test_guardrails_show_estimate_interval_and_tolerance_in_points(tmp_path: Path):
    h = Harness(tmp_path)
    h.traffic.error_rate[CANDIDATE] = 0.3
    h.start()
    h.run_to_end()
    view = h.view()
    (g,) = view["guardrails"]
    assert g["verdict"] == "harm" and g["interval"][0] > g["tolerance"]
    out = text_of(view)
    assert "+0.20 pts" in out and "harm" in out and "rolled back: harm: error_rate" in out
    history = h.controller.history(SERVICE)
    table = Console(width=250, record=True)
    table.print(rollout_view.history_table(history))
    text = table.export_text()
    assert "rolled_back" in text and "harm: error_rate" in text
