"""`shiploop intercept SERVICE --header K=V (--port P | -- COMMAND ...)` and `shiploop intercepts`.

A personal route from the gateway to a process the developer runs (any
language, any debugger), held while this command runs: see cli/lease.py.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

from shiploop.cli.client import DaemonClient
from shiploop.cli.consoles import LazyConsole
from shiploop.cli.lease import LeaseKeeper, confirm, curl_line, describe, line_buffered, with_option, without_hint
from shiploop.cli.remote import project_root
from shiploop.cli.status_view import emit_json
from shiploop.cli.usage import key_value
from shiploop.errors import Conflict, Invalid, ShiploopError
from shiploop.procs import free_port

if TYPE_CHECKING:
    from shiploop.contract import Intercept

console = LazyConsole(highlight=False)
err = LazyConsole(stderr=True, highlight=False)

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> Callable[[], None]:
    """A preexec_fn: the child gets SIGTERM when this CLI dies, even by kill -9 (Linux's PR_SET_PDEATHSIG).

    libc is loaded here, in the parent: a forked child of a threaded process must not import or load anything."""
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return lambda: None
    return lambda: prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def stop_on_signals() -> None:
    """SIGTERM and SIGHUP end the command as Ctrl-C does: the route is released on the way out."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)


def listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def note(text: str) -> None:
    err.print(text, markup=False, soft_wrap=True)


def claim_or_explain(keeper: LeaseKeeper, takeover: bool) -> Intercept:
    """Claim; a refusal names the owner and expiry, and the exact command that takes it over."""
    try:
        return keeper.claim(takeover=takeover)
    except Conflict as e:
        if "intercepted by" not in e.line():
            raise
        raise Conflict(
            without_hint(e.line()), hint=f"take it over: {with_option(sys.argv[1:], '--takeover')}"
        ) from None


def shown_target(keeper: LeaseKeeper, i: Intercept, port: int) -> str:
    if keeper.remote is None:
        return i.target
    return f"127.0.0.1:{port} here, through the tunnel from {keeper.remote.host}"


def intercept(
    service: Annotated[str, typer.Argument(metavar="SERVICE", help="the service whose requests to intercept")],
    command: Annotated[
        list[str] | None,
        typer.Argument(metavar="[-- COMMAND ...]", help="run this with $PORT set and send the requests to it"),
    ] = None,
    header: Annotated[
        str | None, typer.Option("--header", "-H", help="NAME=VALUE: only requests carrying this header")
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", "-p", min=1, max=65535, help="the local port your process listens on")
    ] = None,
    all_requests: Annotated[
        bool, typer.Option("--all", help="every request to the service, everyone's (asks for confirmation)")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation (--all)")] = False,
    takeover: Annotated[
        bool, typer.Option("--takeover", help="take the route from its current owner (recorded as an event)")
    ] = False,
) -> None:
    """Send SERVICE's requests that carry a header to your own process, while this runs."""
    if bool(header) == all_requests:
        raise Invalid(
            "give either --header NAME=VALUE or --all", hint=f"e.g. shiploop intercept {service} -H x-user=ana -p 9000"
        )
    if (port is None) == (not command):
        raise Invalid(
            "give either --port P or -- COMMAND ...",
            hint=f"e.g. shiploop intercept {service} -H x-user=ana -- python app.py",
        )
    name, value = key_value(header, "--header", "NAME=VALUE") if header else ("", "")
    target_port = port if port is not None else free_port()
    if all_requests and not yes:
        question = f"Send every request to {service}, everyone's, to 127.0.0.1:{target_port} while this runs?"
        if not sys.stdin.isatty():
            raise Invalid(
                "--all sends everyone's requests to your process and needs confirmation",
                hint=with_option(sys.argv[1:], "--yes"),
            )
        if not confirm(question):
            err.print("nothing changed")
            raise typer.Exit(1)
    root = project_root()
    line_buffered()
    request = {"header": name, "value": value, "all": all_requests, "port": target_port, "kind": "intercept"}
    keeper = LeaseKeeper(root, service, request, note)
    stop_on_signals()
    i = claim_or_explain(keeper, takeover)
    child: subprocess.Popen[bytes] | None = None
    code = 0
    try:
        console.print(
            f"intercepting {service}: {describe(i)} -> {shown_target(keeper, i, target_port)} "
            f"(lease {i.lease_s:g}s, renewed every {i.renew_s:g}s); Ctrl-C to stop",
            markup=False,
            soft_wrap=True,
        )
        console.print(f"try: {curl_line(i)}", markup=False, soft_wrap=True)
        if command:
            env = dict(os.environ, PORT=str(target_port), SHIPLOOP_GATEWAY=i.gateway)  # the other services
            # Same process group: Ctrl-C reaches it as it would without shiploop (a debugger too).
            child = subprocess.Popen(command, env=env, preexec_fn=die_with_parent())
            console.print(f"started {command[0]} (pid {child.pid}) with PORT={target_port}", markup=False)
        elif not listening("127.0.0.1", target_port):
            note(f"nothing listens on 127.0.0.1:{target_port} yet: those requests get 503 until something does")
        keeper.start()
        while True:
            if child is not None and child.poll() is not None:
                code = child.returncode
                note(f"{command[0] if command else 'the command'} exited with code {code}; route released")
                break
            if keeper.failed.wait(0.2):
                raise ShiploopError(keeper.lost or "the route was lost")
    except KeyboardInterrupt:
        note("route released")
    finally:
        keeper.release()
        if child is not None and child.poll() is None:
            child.terminate()
            try:
                child.wait(timeout=5)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
    raise typer.Exit(code)


def intercepts(as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False) -> None:
    """The personal routes held now: service, match, target, owner and when each lapses unless renewed."""
    from rich.markup import escape
    from rich.table import Table

    from shiploop.contract import Intercept

    rows = DaemonClient(project_root()).call_list(Intercept, "GET", "/v1/intercepts")
    if as_json:
        emit_json(rows)
        return
    if not rows:
        console.print("no intercepts")
        return
    table = Table()
    for column in ("service", "match", "target", "owner", "kind", "lapses in"):
        table.add_column(column)
    now = time.time()
    for i in rows:
        owner = f"{i.owner} (pid {i.pid})" if i.pid else i.owner
        table.add_row(
            i.service, escape(describe(i)), i.target, escape(owner), i.kind, f"{max(0.0, i.expires_at - now):.0f}s"
        )
    console.print(table)
