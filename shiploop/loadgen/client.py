"""A minimal asyncio HTTP/1.1 keep-alive client, built for load generation.

Why not httpx: its per-request overhead caps one process at a few hundred
requests per second, and the gateway benchmarks need thousands. This client is
an asyncio.Protocol with an incremental parser and a LIFO connection pool; it
speaks just enough HTTP/1.1: one request at a time per connection (no
pipelining), Content-Length, chunked and read-until-close bodies.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from shiploop.errors import ShiploopError

MAX_HEAD_BYTES = 64 * 1024
USER_AGENT = "shiploop-loadgen"


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


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str
    host: str
    port: int

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def split_url(url: str) -> tuple[Origin, str]:
    """Split an http(s) URL into its origin and request target ("/path?query")."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ShiploopError(f"unsupported URL {url!r}", hint="use an http:// or https:// URL")
    if not parts.hostname:
        raise ShiploopError(f"no host in URL {url!r}", hint="e.g. http://127.0.0.1:8080/")
    try:
        port = parts.port
    except ValueError:
        raise ShiploopError(f"bad port in URL {url!r}") from None
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    origin = Origin(parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80))
    return origin, target


@dataclass(frozen=True, slots=True)
class Request:
    """A request serialized once, so a load run can send the same bytes many times."""

    method: str
    target: str
    raw: bytes

    @classmethod
    def build(
        cls,
        origin: Origin,
        method: str,
        target: str,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> Request:
        headers = dict(headers or {})
        for name, value in headers.items():
            if any(c in name + value for c in "\r\n") or not name or ":" in name:
                raise ShiploopError(f"bad header {name!r}: {value!r}", hint="use NAME=VALUE on one line")
        names = {name.lower() for name in headers}
        method = method.upper()
        lines = [f"{method} {target} HTTP/1.1"]
        if "host" not in names:
            lines.append(f"Host: {origin.host_header}")
        if "user-agent" not in names:
            lines.append(f"User-Agent: {USER_AGENT}")
        lines.extend(f"{name}: {value}" for name, value in headers.items())
        if "content-length" not in names and (body is not None or method in ("POST", "PUT", "PATCH")):
            lines.append(f"Content-Length: {len(body or b'')}")
        raw = ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")
        return cls(method, target, raw)


@dataclass(slots=True)
class Response:
    status: int
    reason: str
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes
    keep_alive: bool
    sent_at: float = 0.0  # loop time when the request was written


class ProtocolError(Exception):
    pass


# Parser states.
_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _TRAILERS, _UNTIL_CLOSE = range(6)


@dataclass(slots=True)
class ResponseParser:
    """Incremental parser for one response; feed() returns it once complete."""

    head_only: bool = False  # a response to HEAD has headers only
    received: int = 0
    _buf: bytearray = field(default_factory=bytearray)
    _state: int = _HEAD
    _status: int = 0
    _reason: str = ""
    _headers: dict[str, str] = field(default_factory=dict)
    _keep_alive: bool = True
    _remaining: int = 0
    _chunks: list[bytes] = field(default_factory=list)

    def feed(self, data: bytes) -> Response | None:
        self.received += len(data)
        buf = self._buf
        buf += data
        while True:
            state = self._state
            if state == _HEAD:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > MAX_HEAD_BYTES:
                        raise ProtocolError("response head too large")
                    return None
                head = bytes(buf[:end])
                del buf[: end + 4]
                if self._parse_head(head):
                    return self._done(b"")
            elif state == _LENGTH:
                if len(buf) < self._remaining:
                    return None
                body = bytes(buf[: self._remaining])
                del buf[: self._remaining]
                return self._done(body)
            elif state == _CHUNK_SIZE:
                end = buf.find(b"\r\n")
                if end < 0:
                    if len(buf) > 1024:
                        raise ProtocolError("chunk size line too long")
                    return None
                size_text = bytes(buf[:end]).split(b";", 1)[0].strip()
                del buf[: end + 2]
                try:
                    size = int(size_text, 16)
                except ValueError:
                    raise ProtocolError(f"bad chunk size {size_text!r}") from None
                self._remaining = size
                self._state = _CHUNK_DATA if size > 0 else _TRAILERS
            elif state == _CHUNK_DATA:
                size = self._remaining
                if len(buf) < size + 2:
                    return None
                if buf[size : size + 2] != b"\r\n":
                    raise ProtocolError("chunk not followed by CRLF")
                self._chunks.append(bytes(buf[:size]))
                del buf[: size + 2]
                self._state = _CHUNK_SIZE
            elif state == _TRAILERS:
                end = buf.find(b"\r\n")
                if end < 0:
                    if len(buf) > MAX_HEAD_BYTES:
                        raise ProtocolError("trailers too large")
                    return None
                del buf[: end + 2]
                if end == 0:  # the empty line that ends the trailers
                    return self._done(b"".join(self._chunks))
            else:  # _UNTIL_CLOSE
                self._chunks.append(bytes(buf))
                buf.clear()
                return None

    def feed_eof(self) -> Response | None:
        """The peer closed: that completes a read-until-close body, nothing else."""
        if self._state == _UNTIL_CLOSE:
            return self._done(b"".join(self._chunks))
        return None

    def _parse_head(self, head: bytes) -> bool:
        """Parse status line and headers; True when the response has no body."""
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise ProtocolError(f"bad status line {lines[0][:80]!r}")
        status = int(parts[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise ProtocolError(f"bad header line {line[:80]!r}")
            name = name.strip().lower()
            value = value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        if 100 <= status < 200 and status != 101:
            return False  # interim response (100 Continue): the real one follows
        self._status, self._reason, self._headers = status, parts[2] if len(parts) > 2 else "", headers
        connection = headers.get("connection", "").lower()
        if parts[0] == "HTTP/1.0":
            self._keep_alive = "keep-alive" in connection
        else:
            self._keep_alive = "close" not in connection and status != 101
        if self.head_only or status in (101, 204, 304):
            return True
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self._state = _CHUNK_SIZE
        elif "content-length" in headers:
            try:
                length = int(headers["content-length"])
            except ValueError:
                raise ProtocolError(f"bad content-length {headers['content-length']!r}") from None
            if length < 0:
                raise ProtocolError("negative content-length")
            if length == 0:
                return True
            self._state, self._remaining = _LENGTH, length
        else:
            self._state, self._keep_alive = _UNTIL_CLOSE, False
        return False

    def _done(self, body: bytes) -> Response:
        # Bytes beyond the response mean the peer is confused: do not reuse the connection.
        keep_alive = self._keep_alive and not self._buf
        return Response(self._status, self._reason, self._headers, body, keep_alive)


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
            raise ShiploopError(f"max_connections must be at least 1, got {max_connections}")
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
