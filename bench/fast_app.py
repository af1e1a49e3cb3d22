"""A minimal asyncio HTTP/1.1 server answering a fixed body: the app side of the gateway benchmarks.

Stdlib only, one process, one event loop, no per-request parsing beyond finding the
end of the head (and a Content-Length body, if any), so that what the benchmarks
measure is the gateway and the load generator, not the app.

Environment: PORT, SHIPLOOP_VERSION (sent back in x-app-version and in the body).
"""

from __future__ import annotations

import asyncio
import os
import re

VERSION = os.environ.get("SHIPLOOP_VERSION", "dev")
_BODY = f'{{"version":"{VERSION}"}}\n'.encode()
RESPONSE = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: application/json\r\n"
    b"x-app-version: " + VERSION.encode() + b"\r\n"
    b"Content-Length: " + str(len(_BODY)).encode() + b"\r\n"
    b"\r\n" + _BODY
)
_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)


class Http(asyncio.Protocol):
    def __init__(self) -> None:
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        out = []
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            m = _LENGTH.search(buf, 0, end)
            total = end + 4 + (int(m.group(1)) if m else 0)
            if len(buf) < total:
                break
            del buf[:total]
            out.append(RESPONSE)
        if out and self.transport is not None:
            self.transport.write(b"".join(out))


async def main() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Http, "127.0.0.1", int(os.environ["PORT"]), backlog=1024)
    print(f"fast_app {VERSION} listening on {os.environ['PORT']}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
