"""The load generator against a real HTTP server running in the test process."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from shiploop.loadgen import (
    HttpClient,
    LoadReport,
    LoadSpec,
    Result,
    background_load,
    run_load,
    run_load_sync,
)


class _Server(ThreadingHTTPServer):
    """Counts connections and requests per path; ends every handler thread on close."""

    daemon_threads = False  # server_close() joins the handler threads
    # socketserver's backlog is 5: on a loaded machine a burst of overlapping requests opened
    # more connections than that before the accept loop ran, and 33 of 200 were refused.
    request_queue_size = 128

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.connections = 0
        self.hits: Counter[str] = Counter()
        self.release = threading.Event()  # lets /slow answer
        self.open_sockets: set[socket.socket] = set()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def count(self, path: str) -> int:
        with self.lock:
            n = self.hits[path]
            self.hits[path] += 1
            return n

    def process_request(self, request: socket.socket, client_address: tuple[str, int]) -> None:  # type: ignore[override]
        with self.lock:
            self.connections += 1
            self.open_sockets.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket) -> None:  # type: ignore[override]
        with self.lock:
            self.open_sockets.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients that time out and hang up are part of the tests

    def close_all(self) -> None:
        self.release.set()
        self.shutdown()
        with self.lock:
            sockets = list(self.open_sockets)
        for sock in sockets:  # unblocks handler threads waiting on idle keep-alive connections
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        n = self.server.count(self.path)
        if self.path == "/flaky":
            self._send(500 if n % 5 == 4 else 200, b"flaky")
        elif self.path == "/version":
            self._send(200, b"v", {"X-Shiploop-Version": "v2" if n % 4 == 3 else "v1"})
        elif self.path == "/slow":
            self.server.release.wait(10)
            self._send(200, b"late")
        elif self.path == "/busy":  # takes about 50 ms
            self.server.release.wait(0.05)
            self._send(200, b"done")
        elif self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"3\r\nhel\r\n3;ext=1\r\nlo \r\n5\r\nworld\r\n0\r\nX-Trailer: t\r\n\r\n")
        elif self.path == "/close":
            self._send(200, b"bye", {"Connection": "close"})
            self.close_connection = True
        elif self.path == "/drop":  # hangs up without saying so
            self._send(200, b"dropped")
            self.close_connection = True
        else:
            self._send(200, b"ok")

    def do_POST(self) -> None:
        self.server.count(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self._send(200, body)


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.close_all()
        thread.join(10)
        assert not thread.is_alive()


def test_rate_is_accurate_and_not_bursty(server: _Server) -> None:
    results: list[Result] = []
    report = run_load_sync(LoadSpec(server.base + "/", rps=200, duration_s=2, on_result=results.append))

    assert report.total == 400 and len(results) == 400
    assert report.status_counts == {200: 400} and report.failed == 0
    assert server.hits["/"] == 400
    assert 170 <= report.achieved_rps <= 210
    assert 1.9 <= report.duration_s <= 2.5
    scheduled = sorted(r.scheduled_at for r in results)
    assert scheduled[:3] == pytest.approx([0.0, 0.005, 0.010])
    sent = sorted(r.sent_at for r in results if r.sent_at is not None)
    assert len(sent) == 400
    # Spread evenly: every quarter second carries about 50 requests, not a burst.
    per_bucket = Counter(min(int(t / 0.25), 7) for t in sent)
    assert all(30 <= per_bucket[b] <= 70 for b in range(8)), per_bucket
    assert max(b - a for a, b in zip(sent, sent[1:], strict=False)) < 0.1
    assert report.late_starts <= 40
    for r in results:
        assert r.service_time_s is not None and 0 < r.service_time_s <= r.latency_s
    assert 0 < report.latency.p50_s <= report.latency.p99_s <= report.latency.max_s
    assert report.service_latency.count == 400


def test_statuses_are_counted(server: _Server) -> None:
    report = run_load_sync(LoadSpec(server.base + "/flaky", rps=100, duration_s=0.5))
    assert report.total == 50
    assert report.status_counts == {200: 40, 500: 10}
    assert (report.ok, report.failed, report.errors) == (40, 10, 0)


def test_timeout_is_status_zero_and_an_error(server: _Server) -> None:
    started = time.monotonic()
    results: list[Result] = []
    report = run_load_sync(
        LoadSpec(server.base + "/slow", rps=20, duration_s=0.25, timeout_s=0.2, on_result=results.append)
    )
    assert time.monotonic() - started < 2.0
    assert report.total == 5
    assert report.status_counts == {0: 5}
    assert report.error_counts == {"timeout": 5}
    assert (report.errors, report.failed, report.ok) == (5, 5, 0)
    assert report.latency.count == 0
    assert all(r.status == 0 and r.error == "timeout" and r.sent_at is not None for r in results)


def test_queueing_shows_as_late_starts_and_latency_from_schedule(server: _Server) -> None:
    # One connection, 50 ms per response, a request every 20 ms: requests wait for the connection.
    report = run_load_sync(LoadSpec(server.base + "/busy", rps=50, duration_s=0.4, max_connections=1))
    assert report.status_counts == {200: 20}
    assert report.connections_opened == 1
    assert report.late_starts >= 10
    assert report.max_start_lag_s > 0.3
    assert report.latency.max_s > 0.3
    assert report.latency.p99_s > 2 * report.service_latency.p99_s


def test_connection_refused_is_a_connect_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        report = run_load_sync(LoadSpec(f"http://127.0.0.1:{port}/", rps=50, duration_s=0.1, timeout_s=1))
    assert report.error_counts == {"connect": 5}
    assert report.status_counts == {0: 5}
    assert report.late_starts == 0


def test_chunked_response_is_parsed(server: _Server) -> None:
    async def fetch() -> tuple[int, bytes, str]:
        async with HttpClient(server.base + "/chunked") as client:
            response = await client.get()
            return response.status, response.body, response.headers["transfer-encoding"]

    assert asyncio.run(fetch()) == (200, b"hello world", "chunked")

    bodies: list[bytes | None] = []
    report = run_load_sync(LoadSpec(
        server.base + "/chunked", rps=50, duration_s=0.2, keep_body=True,
        on_result=lambda r: bodies.append(r.body),
    ))  # fmt: skip
    assert report.status_counts == {200: 10}
    assert bodies == [b"hello world"] * 10


def test_keep_alive_reuses_connections(server: _Server) -> None:
    report = run_load_sync(LoadSpec(server.base + "/", rps=200, duration_s=1))
    assert report.status_counts == {200: 200}
    assert report.connections_opened == server.connections
    # Connections are opened only for requests that overlap: a handful on a quiet machine,
    # a few more when the test shares two cores with others (11 seen); never one per request.
    assert server.connections <= 20


def test_connection_close_opens_new_connections(server: _Server) -> None:
    report = run_load_sync(LoadSpec(server.base + "/close", rps=50, duration_s=0.2))
    assert report.status_counts == {200: 10}
    assert server.connections == report.connections_opened == 10


def test_server_hanging_up_without_notice_is_not_an_error(server: _Server) -> None:
    async def twice() -> list[int]:
        async with HttpClient(server.base + "/drop") as client:
            return [(await client.get()).status for _ in range(3)]

    assert asyncio.run(twice()) == [200, 200, 200]
    assert server.connections == 3


def test_post_sends_the_body(server: _Server) -> None:
    async def echo() -> bytes:
        async with HttpClient(server.base + "/echo") as client:
            return (await client.post(body=b"payload")).body

    assert asyncio.run(echo()) == b"payload"
    bodies: list[bytes | None] = []
    report = run_load_sync(LoadSpec(
        server.base + "/echo", rps=50, duration_s=0.1, method="POST", body=b"{}",
        headers={"Content-Type": "application/json"}, keep_body=True,
        on_result=lambda r: bodies.append(r.body),
    ))  # fmt: skip
    assert report.method == "POST" and report.status_counts == {200: 5}
    assert bodies == [b"{}"] * 5


def test_captured_header_values_are_counted(server: _Server) -> None:
    seen: list[dict[str, str]] = []
    report = run_load_sync(LoadSpec(
        server.base + "/version", rps=100, duration_s=0.4, capture_headers=["X-Shiploop-Version"],
        on_result=lambda r: seen.append(r.headers),
    ))  # fmt: skip
    assert report.total == 40
    assert report.header_counts == {"x-shiploop-version": {"v1": 30, "v2": 10}}
    assert Counter(h["x-shiploop-version"] for h in seen) == {"v1": 30, "v2": 10}


def test_background_load_starts_and_stops(server: _Server) -> None:
    with background_load(server.base + "/version", rps=100, capture_headers=["x-shiploop-version"]) as load:
        assert load.running
        live = load.wait_until(lambda r: r.total >= 30, timeout_s=10)
        assert live.failed == 0
        stop_started = time.monotonic()
    assert time.monotonic() - stop_started < 2.0
    assert not load.running
    final = load.report()
    assert final.total >= 30 and final.failed == 0
    assert sum(final.header_counts["x-shiploop-version"].values()) == final.total
    assert load.report() is final


def test_run_load_stops_on_event(server: _Server) -> None:
    async def run() -> LoadReport:
        stop = asyncio.Event()
        results: list[Result] = []

        def on_result(result: Result) -> None:
            results.append(result)
            if len(results) == 10:
                stop.set()

        return await run_load(LoadSpec(server.base + "/", rps=200, duration_s=60, on_result=on_result), stop=stop)

    report = asyncio.run(asyncio.wait_for(run(), timeout=10))
    assert 10 <= report.total < 50


def test_a_failing_callback_ends_the_run(server: _Server) -> None:
    def explode(result: Result) -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        run_load_sync(LoadSpec(server.base + "/", rps=100, duration_s=30, on_result=explode))


def test_report_renders_and_serializes(server: _Server) -> None:
    report = run_load_sync(LoadSpec(server.base + "/flaky", rps=100, duration_s=0.1, capture_headers=["server"]))
    data = json.loads(json.dumps(report.as_dict()))
    assert data["status_counts"] == {"200": 8, "500": 2}
    assert data["latency"]["p99_s"] > 0
    text = report.render()
    assert "p99.9" in text and "200=8" in text and "500=2" in text and "server" in text


def test_a_run_where_nothing_answers_says_so_and_shows_no_latency() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: every connect is refused
        report = run_load_sync(LoadSpec(f"http://127.0.0.1:{port}/", rps=50, duration_s=0.1, timeout_s=1))
    assert report.errors == report.total == 5 and report.unanswered_share == 1.0
    text = report.render()
    assert "0.0ms" not in text
    assert "no request got a response" in text and "connect=5" in text
