"""Refuse API requests whose Host header is not this daemon's own address.

The API listens on 127.0.0.1, but a web page can still reach it by DNS
rebinding: a name the attacker controls first resolves to their server, then
to 127.0.0.1, and the browser sends the page's requests (with the attacker's
name in Host) to the daemon. Only a Host of 127.0.0.1, localhost or [::1]
with the API's port is ours.
"""

from __future__ import annotations

import json
from typing import Any

ASGIApp = Any  # (scope, receive, send) -> awaitable; kept loose to avoid a typing dependency


class HostCheck:
    def __init__(self, app: ASGIApp, port: int) -> None:
        self.app = app
        self.allowed = {f"{host}:{port}".encode() for host in ("127.0.0.1", "localhost", "[::1]")}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        hosts = [v for k, v in scope.get("headers", []) if k == b"host"]
        if len(hosts) == 1 and hosts[0].lower() in self.allowed:
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        shown = hosts[0].decode("latin-1")[:100] if hosts else "none"
        body = json.dumps(
            {"error": f"refused: Host {shown!r} is not this daemon's address (127.0.0.1, localhost or [::1] "
             "with its port)"}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 421,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
