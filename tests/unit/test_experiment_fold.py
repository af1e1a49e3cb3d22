"""Envoy's exposure log read from where it stopped (rotation, partial lines) and summed per unit and variant."""

from __future__ import annotations

import json
import os
from pathlib import Path

from shiploop.experiments.log_tail import Position, parse_events, read_from
from shiploop.store import Exposure, Store


def _line(unit: str, arm: str, events: str | None = None, status: int = 200, ms: int = 3) -> str:
    d = {"t": "1.5", "exp": "s1", "unit": unit, "arm": arm, "new": None, "events": events, "status": status, "ms": ms}
    return json.dumps(d) + "\n"


def test_read_resumes_waits_for_whole_lines_and_restarts_on_rotation(tmp_path: Path) -> None:
    log = tmp_path / "experiments.jsonl"
    log.write_text(_line("a", "control") + _line("b", "treatment", "signup") + '{"unit": "c", "ar')
    got, pos, skipped = read_from(log, Position(0, 0))
    assert [e.unit for e in got] == ["a", "b"] and skipped == 0
    assert got[1].events == (("signup", None),)
    assert read_from(log, pos)[0] == []  # the partial line waits
    with log.open("a") as f:
        f.write('m": "control", "exp": "s1"}\n' + "not json\n")
    got, pos2, skipped = read_from(log, pos)
    assert [e.unit for e in got] == ["c"] and skipped == 1
    # Rotated: a new file (another inode) is read from its start.
    os.rename(log, tmp_path / "old.jsonl")
    log.write_text(_line("d", "control"))
    got, pos3, _ = read_from(log, pos2)
    assert [e.unit for e in got] == ["d"] and pos3.offset == len(_line("d", "control"))
    assert read_from(tmp_path / "missing", pos3) == ([], pos3, 0)


def test_parse_events() -> None:
    assert parse_events("signup,purchase=12.50, Purchase=x,,=3") == (
        ("signup", None),
        ("purchase", 12.5),
        ("purchase", None),
    )
    assert parse_events(None) == ()


def test_sums_per_unit_and_variant(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    exp = store.insert_experiment("shop", "s1", "h", {}, "c", "t", 0.0)
    e = [
        Exposure("s1", "u1", "control", 1.0, 200, 3.0, (("signup", None),)),
        Exposure("s1", "u1", "control", 2.0, 200, 3.0, (("signup", None), ("purchase", 10.0))),
        Exposure("s1", "u2", "control", 2.0, 500, 30.0),
        Exposure("s1", "u3", "treatment", 2.0, 200, 3.0, (("purchase", 5.0), ("purchase", 7.0))),
        # A unit keeps the variant of its first request.
        Exposure("s1", "u3", "control", 3.0, 200, 3.0, (("signup", None),)),
    ]
    assert store.record_exposures(exp, e, [5.0, 50.0]) == 5
    assert store.arm_units(exp) == {"control": 2, "treatment": 1}
    conv = store.arm_sums(exp, "signup", conversion=True)
    assert (conv["control"].units, conv["control"].x, conv["treatment"].x) == (2, 1.0, 1.0)
    value = store.arm_sums(exp, "purchase", conversion=False)
    assert (value["control"].x, value["treatment"].x, value["treatment"].xx) == (10.0, 12.0, 144.0)
    assert store.arm_events(exp, "signup") == {"control": 2, "treatment": 1}
    # Traffic counts each request where it was served (the guardrails judge versions, not units).
    control = store.arm_traffic(exp, "control")
    assert (control.requests, control.errors, control.buckets) == (4, 1, {5.0: 3, 50.0: 1})
    store.close()
