"""The `shiploop` executable. `shiploop status` answers through a fast path; everything else through typer.

`shiploop status` is what people and scripts run most, and its start-up is the
CLI's (issue 8, item 6: first output under 250 ms). Importing typer and
building every command costs more CPU than the rest of `status` together
(bench/cli_latency.py), so the two exact command lines below skip both; the
output is the same functions' (cli/status_view.py), and any other argument,
`-h` included, goes through the full command line.
"""

from __future__ import annotations

import sys

FAST_STATUS = {("status",): False, ("status", "--json"): True}


def main() -> None:
    as_json = FAST_STATUS.get(tuple(sys.argv[1:]))
    if as_json is not None:
        from rich.console import Console

        from shiploop.cli.guard import exit_with
        from shiploop.cli.status_view import show_status

        def run() -> int:
            show_status(Console(), as_json)
            return 0

        exit_with(Console(stderr=True), run)
    from shiploop.cli.main import main as full

    full()
