"""A fault under load: the state store refuses every write for 10 s (chattr +i).

Serving goes on and loses nothing, status says what is degraded, and supervision
recovers once the store takes writes again. Apart from test_faults.py so that
`make test` runs it in a worker of its own: it mostly waits.
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
    can_chattr,
    kill_a_replica_and_see_it_restarted,
    serving_project,
    set_immutable,
    store_files,
)

# They count lost requests: `make test` runs the fault modules apart from the parallel part,
# one worker each (1 of 835 was lost once while two other workers loaded both cores).
pytestmark = pytest.mark.serial


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    with serving_project(tmp_path / "proj") as p:
        yield p


def test_store_read_only_for_10s_loses_nothing_and_recovers(project: Project):
    state = project.root / ".shiploop"
    skip = can_chattr(state)
    if skip:
        pytest.skip(skip)
    with Scenario(project, "store read-only 10 s") as s:
        set_immutable(store_files(state), on=True)
        try:
            wait_until(lambda: api_status(project)["degraded"], 6, interval=0.2, what="status to show degraded")
            s.settle(10)  # the fault lasts 10 s of load
        finally:
            set_immutable(store_files(state), on=False)
        wait_until(lambda: api_status(project)["degraded"] == [], 10, interval=0.2, what="recovery")
        s.settle(1)
    assert s.lost == 0
    kill_a_replica_and_see_it_restarted(project)
