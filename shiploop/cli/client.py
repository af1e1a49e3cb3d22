"""The CLI's side of the daemon API: find the daemon, call it, parse answers with the contract's models.

One HTTP/1.1 exchange per call on a plain socket (cli/wire.py).
Errors come back as the contract's ErrorBody and are raised as the errors.py
class of the same kind, so each keeps its exit code (2: the user can fix it,
1: shiploop failed). A 500 names the daemon log, where its traceback is.

pydantic and the contract are imported when an answer is parsed, not with
this module: together ~170 ms of CPU that `shiploop -h`, a usage error or a
command reading raw JSON does not need (issue 8, item 6).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, urlencode

from shiploop.cli.remote import RemoteDaemon, remote_daemon
from shiploop.cli.wire import exchange
from shiploop.errors import ERROR_KINDS, ShiploopError
from shiploop.paths import ProjectPaths, running_daemon

if TYPE_CHECKING:
    from pydantic import BaseModel, TypeAdapter

T = TypeVar("T")
M = TypeVar("M", bound="BaseModel")


class DaemonFailed(ShiploopError):
    """The daemon hit a bug or answered something we cannot read: shiploop's fault, exit 1."""

    http_status = 500
    exit_code = 1


def segment(text: str) -> str:
    """One path segment of a URL, whatever the user typed."""
    return quote(text, safe="")


class DaemonClient:
    remote: RemoteDaemon | None = None  # SHIPLOOP_URL: a daemon on a shared host (cli/remote.py)

    def __init__(self, root: Path, timeout_s: float = 120.0) -> None:
        self.root = root
        self.paths = ProjectPaths(root)
        self.timeout_s = timeout_s
        self.remote = remote_daemon()
        self._tls: Any = None
        if self.remote is not None:
            self.address = (self.remote.host, self.remote.port)
            self._tls = self.remote.tls()
            self._auth = f"Bearer {self.remote.token}"
            return
        info = running_daemon(root)
        if info is None:
            raise ShiploopError("shiploop is not running for this project", hint="start it with: shiploop up --detach")
        self.pid: int = info["pid"]
        self.port = int(info["api_port"])
        self.address = ("127.0.0.1", self.port)
        token = self.paths.token.read_text(errors="replace").strip() if self.paths.token.exists() else ""
        self._auth = f"Bearer {token}"

    @property
    def url(self) -> str:
        return self.remote.url if self.remote is not None else f"http://127.0.0.1:{self.port}"

    def request(self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None) -> Any:
        """The decoded JSON answer; a ShiploopError of the answer's kind on an error."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        target = path + ("?" + urlencode(query) if query else "")
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        try:
            headers["Authorization"] = self._auth.encode("latin-1").decode("latin-1")
        except UnicodeEncodeError:
            raise ShiploopError(
                f"the token in {self.paths.token} is not ASCII text",
                hint="delete it and restart: shiploop down && shiploop up --detach",
            ) from None
        try:
            status, raw = exchange(self.address, method, target, headers, payload, self.timeout_s, self._tls)
        except (OSError, ValueError) as e:
            if self.remote is not None:
                raise self.remote.explain(e) from None
            raise DaemonFailed(
                f"cannot reach the shiploop daemon at {self.url}: {e}",
                hint=f"see its log: {self.paths.daemon_log}",
            ) from None
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            raise DaemonFailed(
                f"the daemon answered {status} with something that is not JSON",
                hint=f"see its log: {self.paths.daemon_log}",
            ) from None
        if status >= 400:
            raise self._error(status, data)
        if self.remote is not None and isinstance(data, dict | list):
            self._public(data)
        return data

    def _public(self, data: dict[str, Any] | list[Any]) -> None:
        """The daemon names its gateway by 127.0.0.1: from this machine it is the shared host's."""
        assert self.remote is not None
        for item in data if isinstance(data, list) else [data]:
            if isinstance(item, dict) and isinstance(item.get("gateway"), str):
                item["gateway"] = self.remote.public(item["gateway"])

    def _error(self, status: int, data: Any) -> ShiploopError:
        from pydantic import ValidationError

        from shiploop.contract import ErrorBody

        try:
            body = ErrorBody.model_validate(data)
        except ValidationError:
            body = ErrorBody(kind="Internal", error=f"the daemon answered {status}")
        if body.kind == "Unauthorized" and self.remote is not None:
            return self.remote.refused()
        if self.remote is not None and status == 500:
            return DaemonFailed(f"{body.error} (on the shared host {self.remote.url})")
        if body.kind == "Unauthorized":
            return ShiploopError(
                "the daemon refused the token",
                hint=f"the token is {self.paths.token}; restart with: shiploop down && shiploop up --detach",
            )
        cls = ERROR_KINDS.get(body.kind)
        if cls is not None and status != 500:
            return cls(body.error)
        # A bug in the daemon: one line, and where its traceback is.
        line = body.error if str(self.paths.daemon_log) in body.error else f"{body.error} (see {self.paths.daemon_log})"
        return DaemonFailed(line)

    def call(self, model: type[M], method: str, path: str, body: Any = None, **params: Any) -> M:
        from pydantic import TypeAdapter

        return self._parse(TypeAdapter(model), self.request(method, path, body, params))

    def call_list(self, model: type[M], method: str, path: str, **params: Any) -> list[M]:
        from pydantic import TypeAdapter

        return self._parse(TypeAdapter(list[model]), self.request(method, path, None, params))  # type: ignore[valid-type]

    def _parse(self, adapter: TypeAdapter[T], data: Any) -> T:
        from pydantic import ValidationError

        try:
            return adapter.validate_python(data)
        except ValidationError as e:
            raise DaemonFailed(
                f"the daemon's answer does not match this CLI's contract: {e.errors()[0]['msg']}",
                hint="a daemon of another shiploop version? restart it: shiploop down && shiploop up --detach",
            ) from None

    def get(self, model: type[M], path: str, **params: Any) -> M:
        return self.call(model, "GET", path, **params)

    def post(self, model: type[M], path: str, body: Any = None, **params: Any) -> M:
        return self.call(model, "POST", path, body if body is not None else {}, **params)
