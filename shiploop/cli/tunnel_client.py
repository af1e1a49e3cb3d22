"""The developer's end of the tunnel: one outbound TLS connection to the shared host, its streams to local ports.

Nothing listens on the developer's machine and nothing needs root: the CLI
connects out (to the tunnel port, the TLS API's + 1), upgrades with its token
and then serves the streams the shared host opens, each to 127.0.0.1:PORT of
the target it registered (tunnel/mux.py). It runs its own event loop in a
thread, beside the lease renewals; losing the connection ends the intercept.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable

from shiploop.cli.remote import RemoteDaemon
from shiploop.errors import ShiploopError
from shiploop.tunnel.mux import UPGRADE, Mux

CONNECT_TIMEOUT_S = 10.0


class TunnelClient:
    def __init__(self, remote: RemoteDaemon, port: int, on_lost: Callable[[str], None]) -> None:
        self.remote = remote
        self.port = port
        self.on_lost = on_lost
        self.targets: dict[str, int] = {}  # key -> local port; changed from other threads (a dict store is atomic)
        self.opened: dict[int, float] = {}  # local port -> when a stream first connected to it (time.time())
        self._local: dict[int, set[asyncio.StreamWriter]] = {}  # local port -> its live connections
        self.session: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._mux: Mux | None = None
        self._thread: threading.Thread | None = None
        self._closing = False

    def open(self) -> str:
        """Connect and upgrade; the session's id. A ShiploopError with its fix when that fails."""
        ready: concurrent.futures.Future[str] = concurrent.futures.Future()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main(ready)), name="tunnel", daemon=True)
        self._thread.start()
        self.session = ready.result(timeout=CONNECT_TIMEOUT_S * 2)
        return self.session

    def close(self) -> None:
        self._closing = True
        loop, mux = self._loop, self._mux
        if loop is not None and mux is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(mux.close)
            except RuntimeError:  # the loop ended meanwhile
                pass
        if self._thread is not None:
            self._thread.join(timeout=2)

    async def _main(self, ready: concurrent.futures.Future[str]) -> None:
        self._loop = asyncio.get_running_loop()
        host = self.remote.host
        try:
            tls = self.remote.tls()
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, self.port, ssl=tls, server_hostname=host), CONNECT_TIMEOUT_S
            )
            writer.write(
                f"GET /v1/tunnel HTTP/1.1\r\nHost: {host}:{self.port}\r\n"
                f"Authorization: Bearer {self.remote.token}\r\n"
                f"Connection: Upgrade\r\nUpgrade: {UPGRADE}\r\n\r\n".encode()
            )
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), CONNECT_TIMEOUT_S)
        except ShiploopError as e:
            ready.set_exception(e)
            return
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as e:
            ready.set_exception(self._explain(e))
            return
        lines = head.decode("latin-1").split("\r\n")
        status = lines[0].split(" ")[1] if len(lines[0].split(" ")) > 1 else ""
        fields = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
        if status == "401":
            ready.set_exception(self.remote.refused())
            writer.close()
            return
        session = fields.get("x-shiploop-session", "")
        if status != "101" or not session:
            ready.set_exception(
                ShiploopError(
                    f"the tunnel endpoint {host}:{self.port} answered {lines[0][:80]!r}",
                    hint="the shared host's daemon may be older than this CLI: shiploop --version on both",
                )
            )
            writer.close()
            return
        self._mux = Mux(reader, writer, self._connect)
        ready.set_result(session)
        await self._mux.run()
        if not self._closing:
            self.on_lost(f"the tunnel to {host}:{self.port} closed")

    def move(self, key: str, port: int) -> None:
        """Send the streams of `key` to `port` from now on (`dev` restarted the process there).

        Envoy keeps its connections to the shared host's tunnel port open, and each
        is a stream already connected to the old process: those are ended (EOF to the
        old process, which closes them after its current answer), so Envoy's next
        request opens a stream to the new one."""
        old = self.targets.get(key)
        self.targets[key] = port
        loop = self._loop
        if old is not None and old != port and loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._retire, old)

    def _retire(self, port: int) -> None:
        for writer in self._local.pop(port, set()):
            if not writer.is_closing() and writer.can_write_eof():
                writer.write_eof()

    async def _connect(self, key: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        port = self.targets[key]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        self.opened.setdefault(port, time.time())
        self._local.setdefault(port, set()).add(writer)
        return reader, writer

    def _explain(self, e: BaseException) -> ShiploopError:
        if isinstance(e, TimeoutError):
            return ShiploopError(
                f"the tunnel endpoint {self.remote.host}:{self.port} did not answer in {CONNECT_TIMEOUT_S:g}s",
                hint=f"a firewall? the shared host must accept TCP on {self.port} (the API port + 1)",
            )
        if isinstance(e, OSError):
            return self.remote.explain(e)
        return ShiploopError(f"the tunnel endpoint {self.remote.host}:{self.port} closed the connection")
