"""The shared host's end of the tunnel: developers' CLIs connect here; intercepted requests go through them.

A CLI opens one TLS connection and upgrades it (HTTP/1.1 `Upgrade:
shiploop-tunnel/1`, its token in `Authorization`) to a session: a multiplexed
byte-stream connection (tunnel/mux.py). Each intercept it claims through the
session gets a port on 127.0.0.1 here, which the intercept's Envoy cluster
points at; each connection Envoy makes to that port becomes a stream the CLI
connects to the developer's process. When a session ends (the CLI exited, was
killed, the network dropped), its intercepts are released at once; a session
that only went silent loses them when their leases lapse (server/intercepts.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from shiploop.errors import Invalid, NotFound
from shiploop.server.intercepts import Intercepts
from shiploop.store import InterceptRow
from shiploop.tunnel.mux import UPGRADE, Mux

log = logging.getLogger(__name__)

MAX_HANDSHAKE = 8192
HANDSHAKE_TIMEOUT_S = 10.0

# Authorization header -> (allowed, the token's user or None for the host's own token)
Verify = Callable[[str], tuple[bool, str | None]]


@dataclass
class Session:
    id: str
    user: str | None
    mux: Mux
    listeners: dict[int, asyncio.Server] = field(default_factory=dict)  # tunnel port -> its server
    intercepts: dict[int, str] = field(default_factory=dict)  # tunnel port -> intercept id


class TunnelServer:
    def __init__(self, intercepts: Intercepts, verify: Verify) -> None:
        self.intercepts = intercepts
        self.verify = verify
        self.sessions: dict[str, Session] = {}
        self.server: asyncio.Server | None = None

    async def start(self, host: str, port: int, tls: ssl.SSLContext) -> None:
        self.server = await asyncio.start_server(self._serve, host, port, ssl=tls)

    async def claim(
        self, tunnel: str, user: str | None, claim: Callable[[str, int], Awaitable[InterceptRow]]
    ) -> InterceptRow:
        """Claim an intercept whose target is a new tunnel port of session `tunnel` ("SESSION:KEY")."""
        session_id, _, key = tunnel.partition(":")
        session = self.sessions.get(session_id)
        if session is None or not key or session.user != user:
            raise NotFound(
                f"tunnel session {session_id} is not open", hint="the CLI opens one itself: run the command again"
            )
        server = await asyncio.start_server(lambda r, w: session.mux.open(key, r, w), "127.0.0.1", 0, limit=2**16)
        port = server.sockets[0].getsockname()[1]
        session.listeners[port] = server
        try:
            row = await claim("127.0.0.1", port)
        except BaseException:
            self._close_listener(session, port)
            raise
        session.intercepts[port] = row.id
        return row

    async def tick(self) -> None:
        """Close the tunnel ports of intercepts that lapsed or were released (a supervisor tick hook)."""
        live = {i.id for i in self.intercepts.rows()}
        for session in self.sessions.values():
            for port, intercept_id in list(session.intercepts.items()):
                if intercept_id not in live:
                    self._close_listener(session, port)

    async def drop_user(self, user: str) -> None:
        """A revoked token's sessions end now."""
        for session in [s for s in self.sessions.values() if s.user == user]:
            session.mux.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for session in list(self.sessions.values()):
            session.mux.close()
            await self._ended(session)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HANDSHAKE_TIMEOUT_S)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError, OSError):
            writer.close()
            return
        lines = head.decode("latin-1").split("\r\n")
        fields = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
        allowed, user = self.verify(fields.get("authorization", ""))
        if not allowed:
            return await self._refuse(writer, 401, "Unauthorized", "missing or wrong token")
        if fields.get("upgrade", "").lower() != UPGRADE:
            return await self._refuse(writer, 400, "Invalid", f"this port speaks only Upgrade: {UPGRADE}")
        session = Session(secrets.token_hex(8), user, Mux(reader, writer))
        self.sessions[session.id] = session
        writer.write(
            f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: {UPGRADE}\r\nConnection: Upgrade\r\n"
            f"X-Shiploop-Session: {session.id}\r\n\r\n".encode()
        )
        log.info("tunnel session %s of %s opened", session.id, user or "the host")
        try:
            await session.mux.run()
        finally:
            await self._ended(session)

    async def _refuse(self, writer: asyncio.StreamWriter, status: int, kind: str, line: str) -> None:
        body = json.dumps({"kind": kind, "error": line}).encode()
        writer.write(
            f"HTTP/1.1 {status} {kind}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n".encode()
            + body
        )
        with contextlib.suppress(ConnectionError, OSError):
            await writer.drain()
        writer.close()

    async def _ended(self, session: Session) -> None:
        """The session's connection is gone: its ports close and its intercepts are released now."""
        if self.sessions.pop(session.id, None) is None:
            return
        log.info("tunnel session %s of %s ended", session.id, session.user or "the host")
        for port in list(session.listeners):
            intercept_id = session.intercepts.get(port)
            self._close_listener(session, port)
            if intercept_id is not None:
                with contextlib.suppress(NotFound, Invalid):
                    await self.intercepts.release(intercept_id)

    def _close_listener(self, session: Session, port: int) -> None:
        server = session.listeners.pop(port, None)
        session.intercepts.pop(port, None)
        if server is not None:
            server.close()
