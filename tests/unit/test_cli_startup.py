"""What a CLI process imports and builds before it does anything (issue 8, item 6).

The test suite alone runs the CLI as a process ~200 times; every command paid
~0.6 s of CPU, mostly imports. These pin what each command no longer pays for,
by the modules loaded (never by time): one fresh interpreter for the imports,
and typer's command table in-process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from functools import cache

import pytest
import typer
from typer.main import get_command

from shiploop.cli.main import app
from shiploop.cli.usage import only_the_command

# Imported by a command that uses them, never by the command line itself.
NOT_AT_IMPORT = (
    "pydantic",
    "shiploop.contract",
    "rich",
    "asyncio",
    "ssl",
    "psutil",
    "fastapi",
    "uvicorn",
    "httpx",
    "shiploop.k8s",
    "shiploop.cli.tunnel_client",
    "importlib.metadata",
)

STAGES = """
import json, sys
stages = {}
import shiploop.cli.main
stages["import"] = sorted(sys.modules)
from shiploop.cli.usage import run_app
try:
    run_app(shiploop.cli.main.app, shiploop.cli.main.err, ["-h"])
except SystemExit:
    pass
stages["help"] = sorted(sys.modules)
print(json.dumps(stages))
"""


@pytest.fixture(scope="module")
def loaded() -> dict[str, set[str]]:
    """The modules one fresh interpreter holds after each stage: import, then `-h`."""
    out = subprocess.run([sys.executable, "-c", STAGES], capture_output=True, text=True, check=True).stdout
    return {stage: set(modules) for stage, modules in json.loads(out.splitlines()[-1]).items()}


def heavy(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in names))


def test_importing_the_command_line_imports_no_command_s_dependencies(loaded):
    assert heavy(loaded["import"], NOT_AT_IMPORT) == []


def test_help_needs_neither_pydantic_nor_rich(loaded):
    assert heavy(loaded["help"], NOT_AT_IMPORT) == []


@cache
def whole_app() -> typer.core.TyperGroup:
    return get_command(app)  # type: ignore[return-value]


def names(t: typer.Typer) -> list[str]:
    return sorted(get_command(t).commands)  # type: ignore[attr-defined]


def test_typer_builds_only_the_command_named():
    every = names(app)
    assert len(every) > 20 and "versions" in every and "experiment" in every
    assert names(only_the_command(app, ["versions", "hello"])) == ["versions"]
    assert names(only_the_command(app, ["prometheus-config"])) == ["prometheus-config"]
    assert names(only_the_command(app, ["experiment", "status", "web"])) == ["experiment"]
    for argv in ([], ["-h"], ["--version"], ["nosuchcmd"]):  # help and errors list the others: all of them
        assert only_the_command(app, argv) is app
    assert names(app) == every  # the app itself is left whole


def test_shell_completion_gets_every_command(monkeypatch):
    monkeypatch.setenv("_SHIPLOOP_COMPLETE", "complete_bash")
    assert only_the_command(app, ["versions"]) is app


def test_an_app_without_a_callback_stays_whole():
    # With one command and no callback typer makes that command the whole command line.
    plain = typer.Typer()
    plain.command()(lambda: None)
    plain.command(name="other")(lambda: None)
    assert only_the_command(plain, ["other"]) is plain


@pytest.mark.parametrize("name", names(app))
def test_a_command_alone_parses_and_helps_as_in_the_whole_app(name, capsys):
    whole, alone = whole_app(), get_command(only_the_command(app, [name]))
    for argv in ([name, "--help"], [name, "--no-such-option"]):
        results = []
        for command in (whole, alone):
            try:
                command.main(args=argv, prog_name="shiploop", standalone_mode=False)
                outcome = "returned"
            except Exception as e:  # help ends in click's Exit; a usage error carries its usage
                ctx = getattr(e, "ctx", None)
                outcome = f"{type(e).__name__}: {e}; {ctx.get_usage() if ctx else ''}"
            results.append((outcome, capsys.readouterr()))
        assert results[0] == results[1], argv
        assert "Usage: shiploop " + name in str(results[0]), results[0]
