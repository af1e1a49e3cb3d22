"""`shiploop status` through the full command line: the same text as the fast path.

The fast path (cli/entry.py, cli/status_fast.py) answers the two plain command
lines; this module serves `status --watch`, the status `up` prints, and every
status the fast path could not give, where the typed client's errors and hints
are wanted. Both draw the text with cli/status_text.py.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel
from rich.console import Console
from rich.table import Table
from rich.text import Text

from shiploop.cli.client import DaemonClient
from shiploop.cli.remote import project_root
from shiploop.cli.status_text import status_text, wants_color
from shiploop.contract import Status


def emit_json(data: Any) -> None:
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json")
    elif isinstance(data, list):
        data = [d.model_dump(mode="json") if isinstance(d, BaseModel) else d for d in data]
    print(json.dumps(data, indent=2, default=str))


def id_column(table: Table, name: str) -> None:
    # Ids are what commands take as arguments: never cut them, whatever the width.
    table.add_column(name, no_wrap=True, overflow="ignore", min_width=12)


def status_view(data: Status, color: bool = True) -> Text:
    """For rich.live (`status --watch` on a terminal)."""
    return Text.from_ansi(status_text(data.model_dump(mode="json"), color))


def render_status(console: Console, data: Status) -> None:
    print(status_text(data.model_dump(mode="json"), wants_color(console.file)), flush=True)


def show_status(console: Console, as_json: bool) -> None:
    """`shiploop status [--json]`."""
    data = DaemonClient(project_root()).get(Status, "/v1/status")
    emit_json(data) if as_json else render_status(console, data)
