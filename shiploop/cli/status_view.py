"""`shiploop status` through the full command line: the same text as the fast path.

The fast path (cli/entry.py, cli/status_fast.py) answers the two plain command
lines; this module serves `status --watch`, the status `up` prints, and every
status the fast path could not give, where the typed client's errors and hints
are wanted. Both draw the text with cli/status_text.py.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

from shiploop.cli.client import DaemonClient
from shiploop.cli.remote import project_root
from shiploop.cli.status_text import status_text, wants_color

if TYPE_CHECKING:
    from rich.table import Table
    from rich.text import Text

    from shiploop.cli.consoles import LazyConsole
    from shiploop.contract import Status


def emit_json(data: Any) -> None:
    if _is_model(data):
        data = data.model_dump(mode="json")
    elif isinstance(data, list):
        data = [d.model_dump(mode="json") if _is_model(d) else d for d in data]
    print(json.dumps(data, indent=2, default=str))


def _is_model(data: Any) -> bool:
    # A parsed answer is a pydantic model; raw JSON (experiments, dashboards) is not, and
    # printing it must not import pydantic just to ask.
    pydantic = sys.modules.get("pydantic")
    return pydantic is not None and isinstance(data, pydantic.BaseModel)


def id_column(table: Table, name: str) -> None:
    # Ids are what commands take as arguments: never cut them, whatever the width.
    table.add_column(name, no_wrap=True, overflow="ignore", min_width=12)


def status_view(data: Status, color: bool = True) -> Text:
    """For rich.live (`status --watch` on a terminal)."""
    from rich.text import Text

    return Text.from_ansi(status_text(data.model_dump(mode="json"), color))


def render_status(console: LazyConsole, data: Status) -> None:
    print(status_text(data.model_dump(mode="json"), wants_color(console.file)), flush=True)


def show_status(console: LazyConsole, as_json: bool) -> None:
    """`shiploop status [--json]`."""
    from shiploop.contract import Status

    data = DaemonClient(project_root()).get(Status, "/v1/status")
    emit_json(data) if as_json else render_status(console, data)
