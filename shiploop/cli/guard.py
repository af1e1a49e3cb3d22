"""Ending a CLI run: every failure becomes one line and an exit code, never a traceback.

Free of typer, so the fast path of cli/entry.py uses it too. A ShiploopError
prints its one line and exits with its kind's code (2 the user's mistake, 1
shiploop's); Ctrl-C exits 130; a closed pipe (`shiploop events | head`) exits
0; anything else is a bug: one line, exit 1 (SHIPLOOP_DEBUG=1 re-raises it to
show the traceback).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn

from shiploop.errors import ShiploopError

if TYPE_CHECKING:
    from shiploop.cli.consoles import LazyConsole


def exit_with(err: LazyConsole, run: Callable[[], int]) -> NoReturn:
    try:
        sys.exit(run())
    except ShiploopError as e:
        from rich.markup import escape  # only now: a command that succeeds need not import rich

        err.print(f"[red]error:[/] {escape(e.line())}", highlight=False, soft_wrap=True, markup=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
    except Exception as e:  # a bug in the CLI
        if os.environ.get("SHIPLOOP_DEBUG"):
            raise
        err.print(
            f"error: internal error in the shiploop CLI ({type(e).__name__}: {e}); "
            "run again with SHIPLOOP_DEBUG=1 to see where",
            highlight=False,
            soft_wrap=True,
            markup=False,
        )
        sys.exit(1)
