"""The load generator without I/O: the HTTP/1.1 parser fed bytes, and the bounds on what a run may ask."""

from __future__ import annotations

import math

import pytest

from shiploop.errors import ShiploopError
from shiploop.loadgen import MAX_REQUESTS, MAX_RPS, LoadError, LoadSpec
from shiploop.loadgen.http1 import Origin, Request, ResponseParser, split_url
from shiploop.loadgen.report import Latency, LoadReport


@pytest.mark.parametrize(
    ("raw", "head_only", "body", "keep_alive"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", False, b"hello", True),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;x\r\nhi\r\n0\r\nT: 1\r\n\r\n", False, b"hi", True),
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n", False, b"", True),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello", False, b"hello", False),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", True, b"", True),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", False, b"x", False),
    ],
)
def test_parser_handles_any_split(raw: bytes, head_only: bool, body: bytes, keep_alive: bool) -> None:
    for split in range(1, len(raw)):
        parser = ResponseParser(head_only=head_only)
        assert parser.feed(raw[:split]) is None
        response = parser.feed(raw[split:])
        assert response is not None, split
        assert (response.body, response.keep_alive) == (body, keep_alive)


def test_parser_reads_until_close() -> None:
    parser = ResponseParser()
    assert parser.feed(b"HTTP/1.1 200 OK\r\n\r\nsome") is None
    assert parser.feed(b" body") is None
    response = parser.feed_eof()
    assert response is not None and response.body == b"some body" and not response.keep_alive


def test_user_mistakes_are_load_errors_not_shiploop_errors() -> None:
    cases = [
        (dict(url="http://127.0.0.1:1/", rps=0, duration_s=1), "rps"),
        (dict(url="ftp://example.com/", rps=1, duration_s=1), "unsupported URL"),
        (dict(url="http://127.0.0.1:1/", rps=1, duration_s=1, max_connections=0), "max_connections"),
    ]
    for kwargs, match in cases:
        with pytest.raises(LoadError, match=match) as info:
            LoadSpec(**kwargs)  # type: ignore[arg-type]
        assert not isinstance(info.value, ShiploopError)
    with pytest.raises(LoadError, match="bad header"):
        Request.build(split_url("http://127.0.0.1:1/")[0], "GET", "/", {"X-Bad": "a\r\nb"})


@pytest.mark.parametrize("rps", [1e9, MAX_RPS * 2, math.inf, math.nan, -1.0])
def test_rates_are_bounded_with_a_clear_error(rps: float) -> None:
    with pytest.raises(LoadError) as info:
        LoadSpec("http://127.0.0.1:1/", rps=rps, duration_s=10)
    assert "rps" in info.value.line() and "\n" not in info.value.line()


def test_runs_too_long_to_keep_in_memory_are_refused() -> None:
    LoadSpec("http://127.0.0.1:1/", rps=MAX_RPS, duration_s=MAX_REQUESTS / MAX_RPS)  # exactly the limit
    with pytest.raises(LoadError, match="over the limit"):
        LoadSpec("http://127.0.0.1:1/", rps=MAX_RPS, duration_s=2 * MAX_REQUESTS / MAX_RPS)
    LoadSpec("http://127.0.0.1:1/", rps=100, duration_s=math.inf)  # until stopped: bounded by in-flight cap


def test_an_empty_report_renders_dashes_not_zero_latency() -> None:
    report = LoadReport(
        url="http://x/", method="GET", target_rps=10, planned_duration_s=1, duration_s=1, total=10,
        achieved_rps=10, ok=0, failed=10, errors=10, status_counts={0: 10}, error_counts={"connect": 10},
        latency=Latency(), service_latency=Latency(), late_starts=0, max_start_lag_s=0.0, header_counts={},
        connections_opened=0,
    )  # fmt: skip
    text = report.render()
    assert "0.0ms" not in text and "no request got a response (connect=10)" in text
    assert report.unanswered_share == 1.0


def test_origin_host_header() -> None:
    assert Origin("http", "::1", 8080).host_header == "[::1]:8080"
    assert split_url("http://h/a?b=1") == (Origin("http", "h", 80), "/a?b=1")
