"""`shiploop token create|list|revoke NAME`: per-user tokens of a shared host (`shiploop up --listen`).

Run on the shared host (they need its own token); a token is printed once,
the daemon keeps only its SHA-256. A developer's intercepts are owned by the
token's name.
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path
from typing import Annotated

import typer

from shiploop.cli.client import DaemonClient, segment
from shiploop.cli.consoles import LazyConsole
from shiploop.cli.status_view import emit_json
from shiploop.paths import find_root, running_daemon

token_app = typer.Typer(help="Per-user tokens for a shared host (shiploop up --listen).", no_args_is_help=True)
console = LazyConsole(highlight=False)

NameArg = Annotated[str, typer.Argument(metavar="NAME", help="whose token, e.g. ana (owns that user's intercepts)")]


def _client() -> DaemonClient:
    return DaemonClient(find_root(Path.cwd()))


@token_app.command("create")
def create(name: NameArg) -> None:
    """Make NAME's token and print it, once, with what to set on their machine."""
    from shiploop.contract import Token

    c = _client()
    t = c.post(Token, "/v1/tokens", {"name": name})
    shared = (running_daemon(c.root) or {}).get("remote")
    console.print(f"token for {t.name} (shown once; only its hash is kept):", markup=False)
    print(t.token, flush=True)
    if isinstance(shared, dict):
        console.print(f"on {t.name}'s machine, with the certificate {shared['cert']} copied there:", markup=False)
        exports = f"SHIPLOOP_URL={shared['url']} SHIPLOOP_TOKEN={shlex.quote(t.token or '')}"
        console.print(f"  export {exports} SHIPLOOP_CA=/path/to/cert.pem", markup=False, soft_wrap=True)
    else:
        console.print("share this daemon first: shiploop down && shiploop up --detach --listen HOST", markup=False)


@token_app.command("list")
def list_tokens(as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False) -> None:
    """The users who have a token (never the tokens)."""
    from rich.table import Table

    from shiploop.contract import Token

    rows = _client().call_list(Token, "GET", "/v1/tokens")
    if as_json:
        emit_json(rows)
        return
    if not rows:
        console.print("no tokens; make one with: shiploop token create NAME")
        return
    table = Table()
    table.add_column("name")
    table.add_column("created")
    for t in rows:
        table.add_row(t.name, time.strftime("%Y-%m-%d %H:%M", time.localtime(t.created_at)))
    console.print(table)


@token_app.command("revoke")
def revoke(name: NameArg) -> None:
    """Revoke NAME's token: refused from now on, its tunnels closed (its intercepts go with them)."""
    from shiploop.contract import Token

    _client().call(Token, "DELETE", f"/v1/tokens/{segment(name)}")
    console.print(f"revoked the token of {name}", markup=False)
