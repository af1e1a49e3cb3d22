"""Running the CLI so that no traceback ever reaches a user.

typer 0.29 bundles its own copy of click (typer._click): its usage errors are
not `click.ClickException`, which is why `deploy hello --weight 101` used to
print ~46 lines of traceback. Every usage error here prints the command's
usage and one error line and exits 2; everything else ends as cli/guard.py says.

It also hands typer only the command the command line names (`only_the_command`).
"""

from __future__ import annotations

import copy
import os
import sys
from typing import TYPE_CHECKING, NoReturn

import typer

try:  # typer >= 0.2x bundles its own click; its exceptions are not click's
    from typer._click import exceptions as click_exceptions
except ImportError:  # an older typer uses click itself
    from click import exceptions as click_exceptions  # type: ignore[no-redef]

from shiploop.cli.guard import exit_with
from shiploop.errors import Invalid

if TYPE_CHECKING:
    from shiploop.cli.consoles import LazyConsole

KeyValue = tuple[str, str]


def key_value(text: str, option: str, form: str) -> KeyValue:
    key, sep, value = text.partition("=")
    if not sep or not key or not value:
        raise Invalid(f"{option} '{text}' is not {form}")
    return key, value


def only_the_command(app: typer.Typer, argv: list[str]) -> typer.Typer:
    """`app` with only the command or group `argv` names (argv[0]) registered; `app` when it names none.

    typer turns every registered command into a click command before it parses
    anything: ~60 ms of CPU for shiploop's 30, a tenth of a whole command, where
    `shiploop NAME ...` needs NAME's alone (~3 ms). What lists or matches other
    commands gets them all: `shiploop` and `shiploop -h` (argv[0] an option or
    missing), an unknown NAME (its error names close ones) and shell completion.
    An app without a callback stays whole: with one command left, typer would make
    it the whole command line (NAME would become its first argument).
    """
    if not argv or argv[0].startswith("-") or any(key.endswith("_COMPLETE") for key in os.environ):
        return app
    if not (app.registered_callback or app.info.callback):  # as typer.main.get_command asks it
        return app
    from typer.main import get_command_name

    commands = [
        c
        for c in app.registered_commands
        if (c.name or (get_command_name(c.callback.__name__) if c.callback else None)) == argv[0]
    ]
    groups = [g for g in app.registered_groups if g.name == argv[0]]
    if not commands and not groups:
        return app
    one = copy.copy(app)  # the registration lists are replaced, not changed: `app` stays whole
    one.registered_commands, one.registered_groups = commands, groups
    return one


def run_app(app: typer.Typer, err: LazyConsole, argv: list[str] | None = None) -> NoReturn:
    app = only_the_command(app, sys.argv[1:] if argv is None else argv)

    def invoke() -> int:
        try:
            code = app(args=argv, prog_name="shiploop", standalone_mode=False)
            # Without standalone mode click returns typer.Exit codes instead of exiting.
            return code if isinstance(code, int) else 0
        except typer.Exit as e:
            return e.exit_code
        except typer.Abort:  # Ctrl-C inside a prompt
            return 130
        except click_exceptions.UsageError as e:
            _usage_error(e, err)
        except click_exceptions.ClickException as e:
            err.print(f"error: {e.format_message()}", highlight=False, soft_wrap=True, markup=False)
            return e.exit_code

    exit_with(err, invoke)


def _usage_error(e: click_exceptions.UsageError, err: LazyConsole) -> NoReturn:
    if isinstance(e, click_exceptions.NoArgsIsHelpError) and e.ctx is not None:
        print(e.ctx.get_help())
        sys.exit(0)
    if e.ctx is not None:
        err.print(e.ctx.get_usage(), highlight=False, soft_wrap=True, markup=False)
        hint = f"see: {e.ctx.command_path} --help"
    else:
        hint = "see: shiploop --help"
    err.print(f"error: {e.format_message()} ({hint})", highlight=False, soft_wrap=True, markup=False)
    sys.exit(2)
