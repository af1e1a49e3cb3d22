"""`shiploop load` as a user runs it: live progress on a terminal, the summary on Ctrl-C, an honest exit code."""

from __future__ import annotations

import os
import pty
import select
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import wait_until
from tests.daemon_helpers import SHIPLOOP


class _Counting(ThreadingHTTPServer):
    daemon_threads = True
    hits = 0


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        assert isinstance(self.server, _Counting)
        self.server.hits += 1
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


@pytest.fixture
def server() -> Iterator[_Counting]:
    srv = _Counting(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(5)


def url_of(srv: _Counting) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}/"


def test_a_run_where_nothing_answers_exits_1_without_fake_latency():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        url = f"http://127.0.0.1:{s.getsockname()[1]}/"
        r = subprocess.run([*SHIPLOOP, "load", url, "--rps", "20", "--duration", "500ms"], capture_output=True,
                           text=True, timeout=60)  # fmt: skip
    assert r.returncode == 1, r.stdout + r.stderr
    assert "0.0ms" not in r.stdout and "no request got a response" in r.stdout
    assert "got no response, over --max-unanswered 0.1" in r.stderr and "Traceback" not in r.stderr


def test_ctrl_c_prints_the_summary_so_far(server: _Counting):
    proc = subprocess.Popen([*SHIPLOOP, "load", url_of(server), "--rps", "50", "--duration", "60s"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        wait_until(lambda: server.hits >= 20, 30, what="requests to arrive")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130
    assert "interrupted after" in err and "Traceback" not in err
    sent = int(out.split("requests   ", 1)[1].split()[0])
    assert sent >= 20 and "ok " in out


@pytest.mark.slow  # over 4 s alone: with `make test`, not `make test-fast`
def test_progress_shows_live_on_a_terminal(server: _Counting):
    master, slave = pty.openpty()
    proc = subprocess.Popen([*SHIPLOOP, "load", url_of(server), "--rps", "40", "--duration", "2s"],
                            stdout=subprocess.PIPE, stderr=slave, text=True)  # fmt: skip
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # the other side closed
                    break
                if not chunk:
                    break
                seen += chunk
            elif proc.poll() is not None:
                break
        out, _ = proc.communicate(timeout=30)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert b"\r" in seen and b"sent " in seen and b"ok " in seen, seen
    assert "requests   80" in out
