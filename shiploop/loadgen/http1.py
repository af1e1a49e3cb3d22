"""HTTP/1.1 without I/O: URLs, serialized requests, and an incremental response parser.

Nothing here touches a socket, so every corner of the protocol (chunked bodies,
interim 100 responses, read-until-close) is tested by feeding bytes. The
connection code is in client.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from shiploop.loadgen.errors import LoadError

MAX_HEAD_BYTES = 64 * 1024
USER_AGENT = "shiploop-loadgen"


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
        raise LoadError(f"unsupported URL {url!r}", hint="use an http:// or https:// URL")
    if not parts.hostname:
        raise LoadError(f"no host in URL {url!r}", hint="e.g. http://127.0.0.1:8080/")
    try:
        port = parts.port
    except ValueError:
        raise LoadError(f"bad port in URL {url!r}") from None
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
                raise LoadError(f"bad header {name!r}: {value!r}", hint="use NAME=VALUE on one line")
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
