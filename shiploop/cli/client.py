"""The CLI's side of the daemon API: find the daemon, call it, turn errors into ShiploopError."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from shiploop.errors import ShiploopError
from shiploop.paths import running_daemon, state_dir_of


def find_root(start: Path) -> Path:
    """The nearest directory at or above `start` holding shiploop.yaml."""
    for d in (start.resolve(), *start.resolve().parents):
        if (d / "shiploop.yaml").exists():
            return d
    raise ShiploopError(
        f"no shiploop.yaml in {start.resolve()} or above",
        hint="run this inside a project, or create one with: shiploop init",
    )


class DaemonClient:
    def __init__(self, root: Path, timeout_s: float = 120.0) -> None:
        info = running_daemon(root)
        if info is None:
            raise ShiploopError("shiploop is not running for this project", hint="start it with: shiploop up --detach")
        self.root = root
        self.pid = info["pid"]
        token_path = state_dir_of(root) / "token"
        token = token_path.read_text().strip() if token_path.exists() else ""
        self.http = httpx.Client(
            base_url=f"http://127.0.0.1:{info['api_port']}",
            timeout=timeout_s,
            headers={"Authorization": f"Bearer {token}"},
        )

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            r = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as e:
            raise ShiploopError(f"cannot reach the shiploop daemon: {e}", hint="check it with: shiploop status") from e
        if r.status_code == 400:
            raise ShiploopError(r.json()["error"])
        if r.status_code == 401:
            raise ShiploopError(
                "the daemon refused the token", hint="the token is .shiploop/token; restart with shiploop up"
            )
        if r.status_code == 422:
            raise ShiploopError(f"invalid request: {r.json().get('detail')}")
        r.raise_for_status()
        return r.json()

    def get(self, path: str, **params: Any) -> Any:
        return self.call("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.call("POST", path, json=body or {})
