"""A minimal asyncio HTTP/1.1 keep-alive client, built for load generation.

Why not httpx: its per-request overhead caps one process at a few hundred
requests per second, and the gateway benchmarks need thousands. This client is
an asyncio.Protocol with an incremental parser and a LIFO connection pool; it
speaks just enough HTTP/1.1: one request at a time per connection (no
pipelining), Content-Length, chunked and read-until-close bodies. The protocol
itself (URLs, request bytes, the response parser) is I/O-free, in http1.py;
this module is the connections and the pool.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping

from shiploop.loadgen.errors import LoadError
from shiploop.loadgen.http1 import (
    MAX_HEAD_BYTES,
    USER_AGENT,
    Origin,
    ProtocolError,
    Request,
    Response,
    ResponseParser,
    split_url,
)


class RequestError(Exception):
    """A request that got no complete HTTP response.

    `kind` is short and stable so reports can count it: "timeout", "connect",
    "closed" or "protocol". `retryable` means the peer closed before sending a
    single byte, the signature of a keep-alive connection that went stale.
    """

    def __init__(self, kind: str, detail: str, *, sent_at: float | None = None, retryable: bool = False) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
        self.sent_at = sent_at
        self.retryable = retryable


__all__ = [
    "MAX_HEAD_BYTES",
    "USER_AGENT",
    "HttpClient",
    "Origin",
    "ProtocolError",
    "Request",
    "RequestError",
    "Response",
    "ResponseParser",
    "split_url",
]


class _Connection(asyncio.Protocol):
    """One TCP connection carrying one exchange at a time."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._parser: ResponseParser | None = None
        self._waiter: asyncio.Future[Response] | None = None
        self.sent_at: float | None = None
        self.closed = False

    @property
    def usable(self) -> bool:
        return not self.closed and self._transport is not None and not self._transport.is_closing()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        parser = self._parser
        if parser is None:  # bytes nobody asked for on an idle connection
            self.abort()
            return
        try:
            response = parser.feed(data)
        except ProtocolError as exc:
            self._fail(RequestError("protocol", str(exc), sent_at=self.sent_at))
            self.abort()
            return
        if response is not None:
            self._parser = None
            if self._waiter is not None and not self._waiter.done():
                self._waiter.set_result(response)

    def eof_received(self) -> bool:
        self.closed = True
        if self._parser is not None:
            response = self._parser.feed_eof()
            if response is not None:
                self._parser = None
                if self._waiter is not None and not self._waiter.done():
                    self._waiter.set_result(response)
        return False  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        got_bytes = self._parser is not None and self._parser.received > 0
        detail = f"{type(exc).__name__}: {exc}" if exc else "connection closed by peer"
        self._fail(RequestError("closed", detail, sent_at=self.sent_at, retryable=not got_bytes))

    def _fail(self, error: RequestError) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(error)

    def abort(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.abort()

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()

    async def roundtrip(self, request: Request) -> Response:
        if not self.usable or self._transport is None:
            raise RequestError("closed", "connection closed before sending", retryable=True)
        self._parser = ResponseParser(head_only=request.method == "HEAD")
        self._waiter = waiter = self._loop.create_future()
        self._transport.write(request.raw)
        self.sent_at = sent_at = self._loop.time()
        try:
            response = await waiter
        finally:
            self._waiter = None
        response.sent_at = sent_at
        return response


class HttpClient:
    """A keep-alive connection pool to one origin, with a per-request timeout.

    The timeout covers everything: waiting for a free connection, connecting,
    sending and reading the whole response.
    """

    def __init__(
        self,
        url: str,
        *,
        max_connections: int = 256,
        timeout_s: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if max_connections < 1:
            raise LoadError(f"max_connections must be at least 1, got {max_connections}")
        self.origin, self.default_target = split_url(url)
        self.timeout_s = timeout_s
        self.connections_opened = 0
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: list[_Connection] = []  # LIFO: reuse the warmest connection
        self._ssl: ssl.SSLContext | None = None
        if self.origin.scheme == "https":
            self._ssl = ssl_context or ssl.create_default_context()

    def build_request(
        self,
        method: str = "GET",
        target: str | None = None,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> Request:
        return Request.build(self.origin, method, target or self.default_target, headers, body)

    async def request(
        self,
        method: str = "GET",
        target: str | None = None,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        timeout_s: float | None = None,
    ) -> Response:
        return await self.send(self.build_request(method, target, headers, body), timeout_s=timeout_s)

    async def get(self, target: str | None = None, headers: Mapping[str, str] | None = None) -> Response:
        return await self.request("GET", target, headers)

    async def post(
        self, target: str | None = None, body: bytes = b"", headers: Mapping[str, str] | None = None
    ) -> Response:
        return await self.request("POST", target, headers, body)

    async def send(self, request: Request, *, timeout_s: float | None = None) -> Response:
        """Send a request and read its response, or raise RequestError."""
        timeout = self.timeout_s if timeout_s is None else timeout_s
        conn: _Connection | None = None
        try:
            async with asyncio.timeout(timeout), self._slots:
                for attempt in (1, 2):
                    conn, reused = await self._checkout()
                    try:
                        response = await conn.roundtrip(request)
                    except RequestError as exc:
                        conn.abort()
                        # A pooled connection the server closed while idle: one retry on a fresh one.
                        if attempt == 1 and reused and exc.retryable:
                            continue
                        raise
                    except BaseException:  # cancelled (timeout or caller): the exchange is torn
                        conn.abort()
                        raise
                    if response.keep_alive and conn.usable:
                        self._idle.append(conn)
                    else:
                        conn.abort()
                    return response
                raise AssertionError("unreachable")
        except TimeoutError:
            sent_at = conn.sent_at if conn is not None else None
            raise RequestError("timeout", f"no response within {timeout:g}s", sent_at=sent_at) from None

    async def _checkout(self) -> tuple[_Connection, bool]:
        while self._idle:
            conn = self._idle.pop()
            if conn.usable:
                conn.sent_at = None
                return conn, True
            conn.abort()
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(_Connection, self.origin.host, self.origin.port, ssl=self._ssl)
        except OSError as exc:
            raise RequestError("connect", f"{type(exc).__name__}: {exc}") from None
        self.connections_opened += 1
        return conn, False

    async def aclose(self) -> None:
        while self._idle:
            self._idle.pop().close()

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
