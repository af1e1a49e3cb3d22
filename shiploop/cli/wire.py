"""One HTTP/1.1 exchange on a fresh socket: all the HTTP the CLI needs.

A plain socket, not httpx or http.client: the CLI talks to one local daemon, and
those imports (httpx ~80 ms; http.client pulls in ssl and email, ~30 ms) were paid
by every `shiploop status` (issue 8, item 6).
"""

from __future__ import annotations

import socket
from typing import Any


def exchange(
    address: tuple[str, int],
    method: str,
    target: str,
    headers: dict[str, str],
    body: bytes | None,
    timeout_s: float,
    tls: Any = None,
    host: str | None = None,
) -> tuple[int, bytes]:
    """One HTTP/1.1 request on a fresh connection: (status, body). ValueError on a malformed answer.

    `tls`: an ssl.SSLContext to wrap the socket in (a remote daemon, https), checked against `host`;
    the caller imports ssl, only then."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {address[0]}:{address[1]}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines.append(f"Content-Length: {len(body or b'')}")
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")
    with socket.create_connection(address, timeout=timeout_s) as raw_sock:
        sock = tls.wrap_socket(raw_sock, server_hostname=host or address[0]) if tls is not None else raw_sock
        sock.sendall(request)
        chunks: list[bytes] = []
        try:
            while data := sock.recv(65536):
                chunks.append(data)
        except OSError:
            if tls is None or not chunks:
                raise  # over TLS, a peer that closes without close_notify has still answered

    raw = b"".join(chunks)
    head, sep, rest = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    if not sep or len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise ValueError(f"not an HTTP answer: {status_line[:60]!r}")
    fields = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    if "chunked" in fields.get("transfer-encoding", "").lower():
        rest = _unchunk(rest)
    elif "content-length" in fields:
        rest = rest[: int(fields["content-length"])]
    return int(parts[1]), rest


def _unchunk(data: bytes) -> bytes:
    out: list[bytes] = []
    while True:
        size_line, sep, data = data.partition(b"\r\n")
        if not sep:
            raise ValueError("truncated chunked body")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return b"".join(out)
        out.append(data[:size])
        data = data[size + 2 :]
