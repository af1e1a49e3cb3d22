"""The `shiploop` executable. `shiploop status` answers through a fast path; everything else through typer.

`shiploop status` is what people and scripts run most, and its start-up is the
CLI's (issue 8, item 6: first output under 250 ms). Importing typer, pydantic
and rich costs more than the rest of `status` together (bench/cli_latency.py),
so the two exact command lines below skip all three (cli/status_fast.py); the
text is the same function's (cli/status_text.py). Any other argument, `-h`
included, and any status the fast path cannot give, goes through the full
command line, which says what is wrong.
"""

from __future__ import annotations

import os
import sys

FAST_STATUS = {("status",): False, ("status", "--json"): True}


def main() -> None:
    as_json = FAST_STATUS.get(tuple(sys.argv[1:]))
    if as_json is not None:
        from shiploop.cli.status_fast import print_status

        try:
            if print_status(as_json):
                sys.exit(0)
        except KeyboardInterrupt:
            sys.exit(130)
        except BrokenPipeError:  # `shiploop status | head`: what was read is all that was wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(0)
    from shiploop.cli.main import main as full

    full()

