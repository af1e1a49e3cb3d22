"""FakeKubeApi: a FAKE Kubernetes API server, in-process, over real HTTP, for the in-cluster controller's tests.

No API server can run on these machines. This implements only the part of the
documented API contract the controller uses, for two kinds:

- ConfigMaps: /api/v1/namespaces/{ns}/configmaps[/{name}]
- Leases:     /apis/coordination.k8s.io/v1/namespaces/{ns}/leases[/{name}]

GET answers the object (404 Status NotFound when absent); POST creates (201,
409 AlreadyExists); PUT replaces (200) and is optimistic concurrency as the
API documents it: a body carrying a resourceVersion other than the stored one
is 409 Conflict ("the object has been modified"), one carrying none replaces
unconditionally; a PUT of an absent object is 404. Every write gets a new
resourceVersion from one counter, as the server's etcd revision. Error bodies
are the documented `Status`. Nothing else (watch, list, patch, admission,
field managers) is implemented: a test that needs it fails on a 405.

`before_put` lets a test slip another writer's change in between a client's
read and its write (the race a 409 exists for).
"""

from __future__ import annotations

import copy
import json
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_PATH = re.compile(
    r"^/(?:api/v1|apis/coordination\.k8s\.io/v1)/namespaces/(?P<ns>[^/]+)/(?P<kind>configmaps|leases)(?:/(?P<name>[^/]+))?$"
)
_KINDS = {"configmaps": ("v1", "ConfigMap"), "leases": ("coordination.k8s.io/v1", "Lease")}


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}  # fmt: skip


class FakeKubeApi:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}  # (namespace, kind plural, name) -> object
        self.lock = threading.Lock()
        self.revision = 100
        self.requests: list[tuple[str, str, int]] = []  # method, path, status answered
        self.before_put: Callable[[str, str, str], None] | None = None  # (ns, kind, name), called unlocked
        self._server: ThreadingHTTPServer | None = None

    # -- the objects, for the test's own assertions -------------------------------------------------

    def get(self, ns: str, kind: str, name: str) -> dict[str, Any] | None:
        with self.lock:
            obj = self.objects.get((ns, kind, name))
            return copy.deepcopy(obj) if obj is not None else None

    def put(self, ns: str, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Create or replace `obj` as another writer would (a new resourceVersion)."""
        with self.lock:
            return self._store(ns, kind, obj)

    def writes(self, kind: str, name: str) -> int:
        return sum(1 for m, p, s in self.requests if m in ("PUT", "POST") and f"/{kind}/{name}" in p and s < 300)

    def _store(self, ns: str, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        self.revision += 1
        obj = copy.deepcopy(obj)
        api_version, kind_name = _KINDS[kind]
        obj["apiVersion"], obj["kind"] = api_version, kind_name
        meta = obj.setdefault("metadata", {})
        old = self.objects.get((ns, kind, meta["name"]))
        meta["namespace"] = ns
        meta["resourceVersion"] = str(self.revision)
        meta["uid"] = (old or {}).get("metadata", {}).get("uid") or f"uid-{kind}-{meta['name']}"
        meta["creationTimestamp"] = (old or {}).get("metadata", {}).get("creationTimestamp") or datetime.now(
            UTC
        ).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.objects[(ns, kind, meta["name"])] = obj
        return copy.deepcopy(obj)

    # -- HTTP ------------------------------------------------------------------------------------

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        m = _PATH.match(path.split("?", 1)[0])
        if m is None:
            return 404, status(404, "NotFound", f"the server could not find the requested resource ({path})")
        ns, kind, name = m["ns"], m["kind"], m["name"]
        key = (ns, kind, name or "")
        if method == "GET" and name:
            with self.lock:
                obj = self.objects.get(key)
                if obj is None:
                    return 404, status(404, "NotFound", f'{kind} "{name}" not found')
                return 200, copy.deepcopy(obj)
        if method == "POST" and not name:
            obj = json.loads(body)
            with self.lock:
                if (ns, kind, obj["metadata"]["name"]) in self.objects:
                    return 409, status(409, "AlreadyExists", f'{kind} "{obj["metadata"]["name"]}" already exists')
                obj["metadata"].pop("resourceVersion", None)
                return 201, self._store(ns, kind, obj)
        if method == "PUT" and name:
            if self.before_put is not None:
                self.before_put(ns, kind, name)
            obj = json.loads(body)
            with self.lock:
                stored = self.objects.get(key)
                if stored is None:
                    return 404, status(404, "NotFound", f'{kind} "{name}" not found')
                given = obj.get("metadata", {}).get("resourceVersion")
                if given and given != stored["metadata"]["resourceVersion"]:
                    message = (f'Operation cannot be fulfilled on {kind} "{name}": the object has been modified; '
                               "please apply your changes to the latest version and try again")  # fmt: skip
                    return 409, status(409, "Conflict", message)
                return 200, self._store(ns, kind, obj)
        return 405, status(405, "MethodNotAllowed", f"{method} on {path} is not implemented by FakeKubeApi")

    def start(self) -> str:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                code, answer = api.handle(self.command, self.path, body)
                api.requests.append((self.command, self.path, code))
                data = json.dumps(answer).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_PATCH = do_DELETE = _answer  # noqa: N815 - http.server's names

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), name="fake-kube-api", daemon=True).start()
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
