"""`shiploop status [--json]` without typer, pydantic or rich (cli/entry.py calls it first).

It asks the daemon its record names for GET /v1/status, which is open to reads
(no token is sent, so a stranger now holding a dead daemon's port learns
nothing), and prints the answer. Whenever anything is not as expected (no
project, no daemon record, no answer, an error, an answer not shaped like a
status) it prints nothing and returns False: the full command line then runs
the same command and says what is wrong, with its hint.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from shiploop.cli.status_text import status_text, wants_color
from shiploop.cli.wire import exchange
from shiploop.errors import ShiploopError
from shiploop.paths import ProjectPaths, find_root

TIMEOUT_S = 30.0


def fetch_status(cwd: Path) -> dict[str, Any] | None:
    if os.environ.get("SHIPLOOP_URL"):
        return None  # a remote daemon: the full command line (TLS, a token, their errors)
    try:
        record = json.loads(ProjectPaths(find_root(cwd)).daemon_record.read_text())
        port = int(record["api_port"])
        code, raw = exchange(("127.0.0.1", port), "GET", "/v1/status", {}, None, TIMEOUT_S)
        data = json.loads(raw) if code == 200 else None
    except (ShiploopError, OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("services"), list) or "gateway" not in data:
        return None
    return data


def print_status(as_json: bool) -> bool:
    """Printed the status: True; anything unexpected: False, having printed nothing."""
    data = fetch_status(Path.cwd())
    if data is None:
        return False
    print(json.dumps(data, indent=2) if as_json else status_text(data, wants_color()), flush=True)
    return True
