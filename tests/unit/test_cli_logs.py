"""`shiploop logs` from disk: files of any version, -n, prefixes and tracks, following new replicas."""

from __future__ import annotations

from pathlib import Path

import pytest

from shiploop.cli import logs
from shiploop.errors import Invalid, NotFound
from shiploop.paths import ProjectPaths
from shiploop.store import DeploymentRow, Store


@pytest.fixture
def paths(tmp_path: Path) -> ProjectPaths:
    p = ProjectPaths(tmp_path)
    (p.logs / "web").mkdir(parents=True)
    for name, text in {"aaaa11112222-0.log": "a0 one\na0 two\n", "aaaa11112222-1.log": "a1 one\n",
                       "bbbb33334444-0.log": "b0 one\n"}.items():  # fmt: skip
        (p.logs / "web" / name).write_text(text)
    return p


def test_n_0_prints_nothing_and_n_limits_each_file(paths: ProjectPaths):
    files = logs.log_files(paths, "web")
    assert list(logs.tail(files, 0)) == []
    assert sorted(line for _, line in logs.tail(files, 1)) == ["a0 two", "a1 one", "b0 one"]
    assert [f.replica for f in logs.log_files(paths, "web", "aaaa11112222")] in (
        ["aaaa11112222#0", "aaaa11112222#1"],
        ["aaaa11112222#1", "aaaa11112222#0"],
    )


def test_versions_resolve_by_prefix_and_track_without_a_daemon(paths: ProjectPaths):
    assert logs.resolve_version(paths, "web", "bbbb") == "bbbb33334444"
    with pytest.raises(Invalid, match="matches 2 versions"):
        (paths.logs / "web" / "bbbb55556666-0.log").write_text("")
        logs.resolve_version(paths, "web", "bbbb")
    with pytest.raises(NotFound, match="no version matching 'zzz'"):
        logs.resolve_version(paths, "web", "zzz")
    with pytest.raises(NotFound, match="no canary"):
        logs.resolve_version(paths, "web", "canary")
    store = Store(paths.db)
    store.upsert_deployment(DeploymentRow("web", "aaaa11112222", "stable", 100, 2, {}, "running", 1.0))
    store.close()
    assert logs.resolve_version(paths, "web", "stable") == "aaaa11112222"


def test_follow_prints_new_lines_and_new_replicas_and_waits_for_whole_lines(paths: ProjectPaths):
    seen: list[tuple[str, str]] = []
    polls = 0
    web = paths.logs / "web"

    def step() -> bool:
        # Runs before each poll: change the files between polls, stop after the third.
        nonlocal polls
        polls += 1
        if polls == 2:
            with open(web / "aaaa11112222-0.log", "a") as f:
                f.write("a0 three\na0 half")
            (web / "cccc77778888-0.log").write_text("c0 started after\n")
        if polls == 3:
            with open(web / "aaaa11112222-0.log", "a") as f:
                f.write(" done\n")
        return polls > 3

    logs.follow(lambda: logs.log_files(paths, "web"), lambda ts, f, line: seen.append((f.replica, line)),
                poll_s=0, should_stop=step)  # fmt: skip
    assert sorted(seen) == [
        ("aaaa11112222#0", "a0 half done"),  # a half-written line waited for its end
        ("aaaa11112222#0", "a0 three"),
        ("cccc77778888#0", "c0 started after"),  # a replica that started after follow began
    ]
    assert ("aaaa11112222#0", "a0 one") not in seen  # the past is -n's job
