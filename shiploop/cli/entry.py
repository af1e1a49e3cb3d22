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
import types

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
    without_pydantic_plugins()
    from shiploop.cli.main import main as full

    full()


def without_pydantic_plugins() -> None:
    """pydantic looks for plugins when it builds its first validator: it imports importlib.metadata
    (with email, zipfile, csv) and reads the entry points of every installed distribution, ~30 ms of
    CPU a command (python -X importtime), for plugins the CLI does not use. typer validates every
    option with pydantic, so every command paid it. PYDANTIC_DISABLE_PLUGINS skips the reading but
    not the import; this stands in for pydantic's loader module (pydantic/plugin/_loader.py, which
    only pydantic/plugin/_schema_validator.py imports) with one that finds none. For this process
    only: the daemon `up` starts gets pydantic's own."""
    loader = types.ModuleType("pydantic.plugin._loader")
    loader.get_plugins = tuple  # type: ignore[attr-defined]  # get_plugins() -> (): no plugins
    sys.modules.setdefault(loader.__name__, loader)
