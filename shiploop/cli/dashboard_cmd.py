"""`shiploop dashboard`: print (or open) a one-time sign-in URL for the daemon's web dashboard."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from shiploop.cli.client import DaemonClient
from shiploop.paths import find_root


def dashboard(
    open_browser: Annotated[bool, typer.Option("--open", help="open the URL in a browser as well")] = False,
) -> None:
    """Print a URL that signs this browser in to the dashboard (one use, valid 2 minutes)."""
    c = DaemonClient(find_root(Path.cwd()))
    url = str(c.request("POST", "/v1/dashboard/login-code")["url"])
    print(url, flush=True)
    if open_browser:
        import webbrowser  # only here: CLI start-up time (issue 8, item 6)

        if not webbrowser.open(url):
            print("no browser could be opened here: open the URL above yourself", flush=True)
