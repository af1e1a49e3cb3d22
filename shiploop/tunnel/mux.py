"""Many byte streams over one connection, with per-stream flow control; used by both ends of the tunnel.

The shared host opens a stream for each connection Envoy makes to an
intercept's tunnel port; the developer's CLI connects each stream to the local
process. A frame is a 9-byte header (kind, stream id, payload length) and its
payload. Bytes pass as they come, in chunks of at most MAX_CHUNK: a streamed
response is never held back to be buffered whole.

Flow control: a side may have at most WINDOW bytes of a stream in flight; the
receiver grants them back (CREDIT) once it has written them to its socket. So
a slow reader of a 1 MB body holds at most WINDOW (+ one chunk) per stream in
memory, at each end, and one stream's slow reader never stalls the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Awaitable, Callable

OPEN, DATA, EOF, CLOSE, CREDIT = 1, 2, 3, 4, 5
HEADER = struct.Struct(">BII")
COUNT = struct.Struct(">I")
MAX_CHUNK = 64 * 1024
WINDOW = 256 * 1024
CREDIT_BATCH = WINDOW // 4
UPGRADE = "shiploop-tunnel/1"

Connect = Callable[[str], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


class ProtocolError(Exception):
    pass


class Stream:
    def __init__(self, mux: Mux, sid: int) -> None:
        self.mux = mux
        self.sid = sid
        self.credit = WINDOW
        self.more_credit = asyncio.Event()
        self.inbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.writer: asyncio.StreamWriter | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.done = 0

    def attach(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.tasks = [asyncio.create_task(self._outbound(reader)), asyncio.create_task(self._inbound(writer))]

    def grant(self, n: int) -> None:
        self.credit += n
        self.more_credit.set()

    async def _outbound(self, reader: asyncio.StreamReader) -> None:
        """Local socket -> tunnel, never more than the peer's window ahead."""
        try:
            while data := await reader.read(MAX_CHUNK):
                while self.credit <= 0:
                    self.more_credit.clear()
                    await self.more_credit.wait()
                self.credit -= len(data)
                await self.mux.send(DATA, self.sid, data)
            await self.mux.send(EOF, self.sid)
        except (ConnectionError, OSError):
            self.abort(tell_peer=True)
            return
        self._half_done()

    async def _inbound(self, writer: asyncio.StreamWriter) -> None:
        """Tunnel -> local socket; each chunk written is granted back to the peer."""
        try:
            owed = 0
            while (data := await self.inbox.get()) is not None:
                writer.write(data)
                await writer.drain()
                owed += len(data)
                # Granted back in batches: a small request and its answer cost no frames of credit at all.
                if owed >= CREDIT_BATCH:
                    await self.mux.send(CREDIT, self.sid, COUNT.pack(owed))
                    owed = 0
            if writer.can_write_eof():
                writer.write_eof()
        except (ConnectionError, OSError):
            self.abort(tell_peer=True)
            return
        self._half_done()

    def _half_done(self) -> None:
        self.done += 1
        if self.done == 2:
            self.abort(tell_peer=False)

    def abort(self, tell_peer: bool) -> None:
        if self.mux.streams.pop(self.sid, None) is None:
            return
        current = asyncio.current_task()
        for t in self.tasks:
            if t is not current:
                t.cancel()
        if self.writer is not None:
            self.writer.close()
        if tell_peer:
            self.mux.send_soon(CLOSE, self.sid)


class Mux:
    """One end of the tunnel. `connect` (the CLI's end) turns a peer's OPEN into a local connection."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, connect: Connect | None = None
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.connect = connect
        self.streams: dict[int, Stream] = {}
        self.next_id = 1
        self.background: set[asyncio.Task[None]] = set()
        self.closed = False

    async def send(self, kind: int, sid: int, payload: bytes = b"") -> None:
        # One write per frame: over TLS each write is a record, and a record is a send().
        self.writer.write(HEADER.pack(kind, sid, len(payload)) + payload)
        await self.writer.drain()

    def send_soon(self, kind: int, sid: int) -> None:
        self._spawn(self._send_quietly(kind, sid))

    async def _send_quietly(self, kind: int, sid: int) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            await self.send(kind, sid)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def open(self, key: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A local connection (Envoy's, on the shared host) becomes a stream to the peer's target `key`.

        When the tunnel has ended, or ends while OPEN is being sent, the connection is closed at once,
        so Envoy answers 503; left open, it waited out Envoy's route timeout (15 s) for an answer
        that could not come."""
        if self.closed:
            writer.close()
            return
        sid = self.next_id
        self.next_id += 1
        stream = Stream(self, sid)
        stream.writer = writer  # from here on, the stream's abort (the tunnel ending) closes the connection
        self.streams[sid] = stream
        try:
            await self.send(OPEN, sid, key.encode())
        except (ConnectionError, OSError):
            stream.abort(tell_peer=False)
            return
        if sid in self.streams:
            stream.attach(reader, writer)

    async def run(self) -> None:
        """Read frames until the connection ends; then every stream ends with it."""
        try:
            while True:
                kind, sid, size = HEADER.unpack(await self.reader.readexactly(HEADER.size))
                if size > MAX_CHUNK:
                    raise ProtocolError(f"frame of {size} bytes")
                payload = await self.reader.readexactly(size) if size else b""
                self._dispatch(kind, sid, payload)
        except (asyncio.IncompleteReadError, ConnectionError, OSError, ProtocolError):
            pass
        finally:
            self.close()

    def _dispatch(self, kind: int, sid: int, payload: bytes) -> None:
        stream = self.streams.get(sid)
        if kind == OPEN:
            if self.connect is None or stream is not None:
                raise ProtocolError("unexpected OPEN")
            stream = Stream(self, sid)
            self.streams[sid] = stream
            self._spawn(self._accept(stream, payload.decode(errors="replace")))
        elif stream is None:
            return  # a stream this side already closed: its late frames are dropped
        elif kind == DATA:
            stream.inbox.put_nowait(payload)
        elif kind == EOF:
            stream.inbox.put_nowait(None)
        elif kind == CREDIT:
            stream.grant(COUNT.unpack(payload)[0])
        elif kind == CLOSE:
            stream.abort(tell_peer=False)
        else:
            raise ProtocolError(f"unknown frame kind {kind}")

    async def _accept(self, stream: Stream, key: str) -> None:
        assert self.connect is not None
        try:
            reader, writer = await self.connect(key)
        except (OSError, KeyError, ValueError):
            stream.abort(tell_peer=True)  # Envoy sees the connection reset: a 503 for that request
            return
        if stream.sid not in self.streams:
            writer.close()
            return
        stream.attach(reader, writer)

    def close(self) -> None:
        self.closed = True
        for stream in list(self.streams.values()):
            stream.abort(tell_peer=False)
        self.writer.close()
