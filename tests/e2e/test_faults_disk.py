"""Faults on a project whose state lives on a small tmpfs: two `up` at once, then a full disk.

Apart from test_faults.py so that `make test` runs it in a worker of its own: it mostly waits.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import wait_until
from tests.daemon_helpers import Project
from tests.faults import (
    Scenario,
    api_status,
    can_mount,
    fill,
    kill_a_replica_and_see_it_restarted,
    mount_tmpfs,
    new_project,
    restore_and_take_down,
    stable_ready,
    unmount,
)

# They count lost requests: `make test` runs the fault modules apart from the parallel part,
# one worker each (1 of 835 was lost once while two other workers loaded both cores).
pytestmark = pytest.mark.serial


@pytest.fixture
def tmpfs_project(tmp_path: Path) -> Iterator[Project]:
    """A project whose state directory is a small tmpfs of its own, unmounted at the end."""
    skip = can_mount()
    if skip:
        pytest.skip(skip)
    p = new_project(tmp_path / "proj")
    state = p.root / ".shiploop"
    mount_tmpfs(state, "48m")
    try:
        yield p
        restore_and_take_down(p)
    finally:
        unmount(state)


def test_two_ups_at_once_then_a_full_disk(tmpfs_project: Project):
    p = tmpfs_project
    results = p.ups_at_once(2)
    assert sorted(code for code, _, _ in results) == [0, 2], results
    loser = next(err for code, _, err in results if code == 2)
    assert f"pid {p.daemon_info()['pid']}" in loser, loser
    assert stable_ready(p) == 2 and len(p.recorded_processes()) == 3
    with Scenario(p, "two concurrent up") as s:
        s.settle(2)
    assert s.lost == 0

    state = p.root / ".shiploop"
    with Scenario(p, "full disk 10 s") as s:
        filler = fill(state)
        try:
            s.settle(10)  # the fault lasts 10 s of load: not a byte free
            degraded = api_status(p)["degraded"]
        finally:
            filler.unlink()
        wait_until(lambda: api_status(p)["degraded"] == [], 10, interval=0.2, what="recovery")
        s.settle(1)
    print(f"fault full disk 10 s: status showed {degraded or 'nothing degraded'}")
    assert s.lost == 0
    kill_a_replica_and_see_it_restarted(p)
