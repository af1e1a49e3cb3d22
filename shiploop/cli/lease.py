"""The CLI's side of a personal route: claim it, renew its lease in a thread, claim it again after a lapse, release it.

The daemon removes a route whose lease was not renewed for its lease time
(server/intercepts.py), so whatever ends this process (Ctrl-C, kill -9, a lost
connection) the route goes. Renewals use short timeouts: a daemon that does not
answer must not hold the thread past the lease.

Every `shiploop` command imports this module (through intercept_cmd and dev), so
the contract's models and the tunnel (asyncio) are imported where they are used.
"""

from __future__ import annotations

import getpass
import os
import shlex
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shiploop.cli.client import DaemonClient, segment
from shiploop.cli.remote import remote_daemon
from shiploop.errors import Conflict, NotFound, ShiploopError

if TYPE_CHECKING:
    from shiploop.cli.tunnel_client import TunnelClient
    from shiploop.contract import Intercept

RENEW_TIMEOUT_S = 3.0
TUNNEL_KEY = "1"  # this CLI's one route in its tunnel session


def owner_name() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container's uid)
        user = f"uid{os.getuid()}"
    return f"{user}@{socket.gethostname()}"


def user_name() -> str:
    return owner_name().split("@", 1)[0]


def describe(i: Intercept) -> str:
    return f"{i.header}: {i.value}" if i.header else "every request (--all)"


def curl_line(i: Intercept) -> str:
    path = i.paths[0] if i.paths else "/"
    header = f"-H {shlex.quote(f'{i.header}: {i.value}')} " if i.header else ""
    return f"curl {header}{i.gateway}{path}"


def without_hint(line: str) -> str:
    return line.split(" (hint: ", 1)[0]


def with_option(argv: list[str], option: str) -> str:
    """The command line the user typed, with `option` added before any `--`: a hint that works."""
    args = list(argv)
    at = args.index("--") if "--" in args else len(args)
    args.insert(at, option)
    return "shiploop " + shlex.join(args)


class LeaseKeeper:
    def __init__(self, root: Path, service: str, request: dict[str, Any], note: Callable[[str], None]) -> None:
        self.root = root
        self.service = service
        self.request = dict(request, owner=owner_name(), pid=os.getpid())
        self.note = note  # prints a line for the user (from the renewal thread too)
        self.current: Intercept | None = None
        self.lost: str | None = None  # why the route could not be kept; `failed` is set with it
        self.failed = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.remote = remote_daemon()
        self.tunnel: TunnelClient | None = None  # against a remote daemon: the requests come through it

    def _open_tunnel(self) -> str:
        """The tunnel (opened once) and the target of this route in it: SESSION:KEY for the claim."""
        from shiploop.cli.tunnel_client import TunnelClient
        from shiploop.contract import RemoteInfo

        assert self.remote is not None
        if self.tunnel is None:
            info = self._client().get(RemoteInfo, "/v1/remote")
            tunnel = TunnelClient(self.remote, info.tunnel_port, self._tunnel_lost)
            tunnel.open()
            self.tunnel = tunnel
        self.tunnel.targets[TUNNEL_KEY] = int(self.request["port"])
        return f"{self.tunnel.session}:{TUNNEL_KEY}"

    def _tunnel_lost(self, why: str) -> None:
        if not self._stop.is_set():
            self.lost = f"{why}: the route is removed with it"
            self.failed.set()

    @property
    def id(self) -> str:
        assert self.current is not None
        return self.current.id

    def claim(self, takeover: bool = False) -> Intercept:
        from shiploop.contract import Intercept

        body = dict(self.request, takeover=takeover)
        if self.remote is not None:
            body["tunnel"] = self._open_tunnel()
        self.current = self._client().post(Intercept, f"/v1/services/{segment(self.service)}/intercepts", body)
        return self.current

    def start(self) -> None:
        assert self.current is not None
        self._thread = threading.Thread(target=self._renew_loop, name="lease-renewal", daemon=True)
        self._thread.start()

    def retarget(self, port: int) -> Intercept:
        from shiploop.contract import Intercept

        with self._lock:
            self.request["port"] = port
            if self.tunnel is not None and self.current is not None:
                # The shared host's tunnel port stays; only the stream's end here moves.
                self.tunnel.move(TUNNEL_KEY, port)
                return self.current
            host = self.request.get("host", "127.0.0.1")
            target = {"host": host, "port": port}
            self.current = self._client().call(Intercept, "PUT", f"/v1/intercepts/{self.id}/target", target)
            return self.current

    def release(self) -> None:
        """Take the route out now (best effort: if the daemon does not answer, the lease lapses)."""
        from shiploop.contract import Intercept

        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=RENEW_TIMEOUT_S + 1)
        try:
            if self.current is None or self.lost is not None:
                return
            try:
                self._client(RENEW_TIMEOUT_S).call(Intercept, "DELETE", f"/v1/intercepts/{self.id}")
            except ShiploopError as e:
                if not isinstance(e, NotFound):
                    self.note(f"could not release the route ({without_hint(e.line())}); it lapses by itself")
            self.current = None
        finally:
            if self.tunnel is not None:
                self.tunnel.close()

    def _client(self, timeout_s: float = 120.0) -> DaemonClient:
        # A new one each call: it reads daemon.json, so a restarted daemon (a new API port) is found.
        return DaemonClient(self.root, timeout_s=timeout_s)

    def _renew_loop(self) -> None:
        from shiploop.contract import Intercept

        assert self.current is not None
        renew_s = self.current.renew_s
        unreachable_since: float | None = None
        while not self._stop.wait(renew_s):
            try:
                with self._lock:
                    renewed = self._client(RENEW_TIMEOUT_S).post(Intercept, f"/v1/intercepts/{self.id}/renew")
                    self.current = renewed
            except NotFound:
                if not self._claim_again():
                    return
            except ShiploopError as e:
                if unreachable_since is None:
                    unreachable_since = time.monotonic()
                    self.note(
                        f"cannot renew the lease ({without_hint(e.line())}); retrying every {renew_s:g}s, "
                        f"the route lapses after {self.current.lease_s:g}s without a renewal"
                    )
                continue
            if unreachable_since is not None:
                self.note(f"lease renewed again after {time.monotonic() - unreachable_since:.1f}s")
                unreachable_since = None

    def _claim_again(self) -> bool:
        """The lease lapsed (the daemon was away or busy) or someone took it over: claim it back if free."""
        if self._stop.is_set():
            return False
        try:
            with self._lock:
                self.claim()
        except Conflict as e:
            self.lost = f"the route was taken over: {without_hint(e.line())}"
        except ShiploopError as e:
            self.lost = f"the lease lapsed and could not be claimed again: {without_hint(e.line())}"
        else:
            self.note("the lease had lapsed; the route is claimed again")
            return True
        self.failed.set()
        return False


def line_buffered() -> None:
    """Each line out at once, piped too: a long-running command's output is read as it comes."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(line_buffering=True)


def confirm(question: str) -> bool:
    """y/N on the terminal; False when there is none to ask."""
    if not sys.stdin.isatty():
        return False
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")
