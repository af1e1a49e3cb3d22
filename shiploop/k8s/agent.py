"""The gateway's agent: follows the routing-state document and keeps Envoy's xDS files in step with it.

In a cluster it runs beside Envoy in the gateway pod; the document is the
routing ConfigMap mounted as a file (the kubelet swaps it in place when the
ConfigMap changes), the xDS files go to an emptyDir Envoy watches. It renders
with the local gateway's code (gateway/render.py) and publishes with its
Publisher: generation directories and one rename, and, once Envoy's admin
socket is there, a wait until Envoy serves each generation (a generation
Envoy rejects is undone, and the last good one keeps serving).

A document that cannot be read keeps the last good routing in place; the
health endpoint answers 503 with the reason until a good one arrives.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from shiploop.errors import ShiploopError
from shiploop.gateway import render
from shiploop.gateway.admin import EnvoyAdmin
from shiploop.gateway.publisher import Publisher
from shiploop.k8s import routing_doc
from shiploop.k8s.ticking import every

log = logging.getLogger("shiploop.agent")
ADMIN_SOCKET = "admin.sock"
BOOTSTRAP = "bootstrap.json"


def bootstrap(xds_dir: Path, node_id: str, stats_port: int | None, stats_address: str) -> dict[str, Any]:
    """The local gateway's bootstrap; the stats listener on `stats_address` (all addresses in a pod,
    where Prometheus scrapes it from outside; the admin API stays on the socket)."""
    boot = render.bootstrap(xds_dir, xds_dir / ADMIN_SOCKET, node_id, stats_port)
    for listener in boot.get("static_resources", {}).get("listeners", []):
        listener["address"]["socket_address"]["address"] = stats_address
    return boot


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@dataclass
class Health:
    applied: int = 0  # documents applied
    generation: int = 0
    error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self) -> tuple[int, dict[str, Any]]:
        with self.lock:
            ok = self.error is None and self.applied > 0
            return (200 if ok else 503), {"applied": self.applied, "generation": self.generation, "error": self.error}


class Agent:
    def __init__(self, state_file: Path, xds_dir: Path, *, stats_port: int | None, stats_address: str = "0.0.0.0",
                 node_id: str = "shiploop-gateway") -> None:  # fmt: skip
        self.state_file = state_file
        self.xds_dir = xds_dir
        self.stats_port = stats_port
        self.stats_address = stats_address
        self.node_id = node_id
        self.publisher = Publisher(xds_dir)
        self.health = Health()
        self._last_digest: str | None = None
        self._admin: EnvoyAdmin | None = None

    def write_bootstrap(self) -> Path:
        path = self.xds_dir / BOOTSTRAP
        write_atomically(path, json.dumps(bootstrap(self.xds_dir, self.node_id, self.stats_port, self.stats_address)))
        return path

    def _attach_envoy(self) -> None:
        # Envoy starts after the first generation is written (the init container); from the moment
        # its admin socket exists, each publish waits for Envoy to serve it.
        socket = self.xds_dir / ADMIN_SOCKET
        if self._admin is None and socket.exists():
            self._admin = EnvoyAdmin(socket)
            self.publisher.attach(self._admin)

    async def apply_if_changed(self) -> bool:
        """Publish the document if it changed since the last publish; True when it did."""
        self._attach_envoy()
        where = str(self.state_file)
        try:
            text = self.state_file.read_text()
        except OSError as e:
            raise ShiploopError(f"cannot read the routing state ({e.strerror})", where=where) from None
        digest = hashlib.sha256(text.encode()).hexdigest()
        if digest == self._last_digest:
            return False
        state = routing_doc.loads(text, where)
        routing_doc.check(state, where)
        result = await self.publisher.publish(state)
        self._last_digest = digest
        with self.health.lock:
            self.health.applied += 1
            self.health.generation = result.generation
            self.health.error = None
        log.info("published routing generation %d (%d routes, %d clusters)", result.generation,
                 len(state.routes), len(state.clusters))  # fmt: skip
        return True

    async def step(self) -> None:
        """One look at the document; a mistake is logged and kept for the health endpoint, never raised."""
        try:
            await self.apply_if_changed()
        except ShiploopError as e:
            with self.health.lock:
                changed = self.health.error != e.line()
                self.health.error = e.line()
            if changed:
                log.error("%s", e.line())

    async def run(self, interval_s: float, stop: asyncio.Event) -> None:
        await every(interval_s, self.step, stop)
        if self._admin is not None:
            await self._admin.close()


def serve_health(health: Health, port: int, address: str = "0.0.0.0") -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            status, body = health.answer() if self.path == "/healthz" else (404, {"error": "only /healthz"})
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
            pass

    server = ThreadingHTTPServer((address, port), Handler)
    threading.Thread(target=server.serve_forever, name="agent-health", daemon=True).start()
    return server
