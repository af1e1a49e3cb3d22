"""The pieces behind private state, the project lock and the Host check, without processes."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from shiploop.daemon.hostcheck import HostCheck
from shiploop.errors import Conflict
from shiploop.paths import ProjectPaths, admin_socket_path, lock_project, secure_state_dir


def test_secure_state_dir_closes_an_old_open_state_dir(tmp_path: Path):
    paths = ProjectPaths(tmp_path)
    (paths.logs / "web").mkdir(parents=True)
    (paths.logs / "web" / "a-0.log").write_text("x")
    script = paths.state_dir / "tool.sh"
    script.write_text("#!/bin/sh\n")
    log = paths.logs / "web" / "a-0.log"
    for p, m in [(paths.state_dir, 0o755), (paths.logs, 0o755), (log, 0o644), (script, 0o755)]:
        p.chmod(m)
    secure_state_dir(paths)
    modes = {p: stat.S_IMODE(p.stat().st_mode) for p in (paths.state_dir, paths.logs, paths.logs / "web")}
    assert set(modes.values()) == {0o700}
    assert stat.S_IMODE((paths.logs / "web" / "a-0.log").stat().st_mode) == 0o600
    assert stat.S_IMODE(script.stat().st_mode) == 0o700  # the owner keeps execute


def test_the_project_lock_is_exclusive_and_names_its_holder(tmp_path: Path):
    paths = ProjectPaths(tmp_path)
    fd = lock_project(paths)
    try:
        with pytest.raises(Conflict, match=f"pid {os.getpid()}"):
            lock_project(paths)
    finally:
        os.close(fd)
    os.close(lock_project(paths))  # free again once its holder let go


def test_admin_socket_moves_out_of_a_state_dir_too_deep_for_a_unix_socket(tmp_path: Path):
    short = admin_socket_path(tmp_path / ".shiploop")
    assert short.parent == tmp_path / ".shiploop"
    deep = tmp_path / ("d" * 120) / ".shiploop"
    moved = admin_socket_path(deep)
    assert len(os.fsencode(moved)) <= 107
    assert stat.S_IMODE(moved.parent.stat().st_mode) == 0o700 and moved.parent.stat().st_uid == os.getuid()
    assert admin_socket_path(deep) == moved != admin_socket_path(tmp_path / ("e" * 120) / ".shiploop")


def call(app: HostCheck, host: bytes | None) -> tuple[int, bytes]:
    sent: list[dict[str, Any]] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    app.app = inner
    headers = [(b"host", host)] if host is not None else []
    asyncio.run(app({"type": "http", "headers": headers}, receive, send))
    return sent[0]["status"], sent[1]["body"]


@pytest.mark.parametrize(
    "host, status",
    [
        (b"127.0.0.1:4000", 200),
        (b"LOCALHOST:4000", 200),
        (b"[::1]:4000", 200),
        (b"attacker.example:4000", 421),
        (b"127.0.0.1:4001", 421),
        (b"localhost", 421),
        (None, 421),
    ],
)
def test_host_check(host: bytes | None, status: int):
    got, body = call(HostCheck(None, 4000), host)
    assert got == status
    if status == 421:
        assert b"not this daemon's address" in body and b"\n" not in body
