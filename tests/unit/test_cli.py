"""The CLI's own behaviour, without a daemon: usage errors, flags, help, and every hint it can print."""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path

import pytest
import typer

from shiploop.cli.main import app, err
from shiploop.cli.usage import run_app

PACKAGE = Path(__file__).resolve().parents[2] / "shiploop"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        run_app(app, err, list(argv))
    out, error = capsys.readouterr()
    code = info.value.code
    return (code if isinstance(code, int) else 0), out, error


def one_error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["deploy", "hello", "--weight", "101"], "--weight"),
        (["deploy"], "Missing argument 'SERVICE'"),
        (["status", "--bogus"], "No such option: --bogus"),
        (["nosuchcmd"], "No such command 'nosuchcmd'"),
        (["logs", "hello", "-n", "-1"], "--lines"),
        (["load", "http://127.0.0.1:1/", "--rps", "abc"], "--rps"),
    ],
)
def test_usage_errors_print_usage_and_one_line_and_exit_2(capsys, argv, message):
    code, _, stderr = run(capsys, *argv)
    assert code == 2
    assert stderr.startswith("Usage: shiploop")
    assert message in one_error_line(stderr)


@pytest.mark.parametrize("argv", [[], ["-h"], ["--help"], ["deploy", "-h"], ["events", "--help"]])
def test_help_exits_0(capsys, argv):
    code, out, stderr = run(capsys, *argv)
    assert code == 0 and out.startswith("Usage: shiploop") and stderr == ""


def test_bare_shiploop_lists_the_commands(capsys):
    code, out, _ = run(capsys)
    assert code == 0
    for command in ("init", "up", "status", "deploy", "route", "logs", "events", "rollout", "load"):
        assert re.search(rf"^\s+{command}\s", out, re.M), command


def test_version_and_completion(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == 0 and re.match(r"shiploop \d", out)
    code, out, _ = run(capsys, "--help")
    assert "--install-completion" in out and "--show-completion" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["route", "web", "--weight", "stable=100", "--weight", "stable=0"], "gives stable twice"),
        (["route", "web", "--weight", "canary=10", "--header", "x-user=ana", "--to", "canary"], "cannot be combined"),
        (["route", "web", "--header", "x-user=ana", "--remove-header", "x-user"], "cannot be combined"),
        (["route", "web", "--weight", "canary=10", "--to", "canary"], "--to goes with --header"),
        (["route", "web", "--header", "x-user=ana"], "--header needs --to"),
        (["route", "web", "--remove-header", "=a"], "no header name"),
        (["route", "web", "--weight", "canary=ten"], "whole number"),
        (["route", "web"], "route needs"),
        (["load", "http://127.0.0.1:1/", "--rps", "1e9"], "over the limit"),
        (["load", "http://127.0.0.1:1/", "--rps", "100", "--duration", "1000h"], "over the limit"),
        (["load", "ftp://example.com/"], "unsupported URL"),
        (["load", "http://127.0.0.1:1/", "--duration", "soon"], "--duration"),
    ],
)
def test_ambiguous_or_impossible_input_is_an_error_before_any_daemon_is_asked(capsys, tmp_path, argv, message):
    # No project and no daemon here: the input is refused before either is looked for.
    code, _, stderr = run(capsys, *argv)
    assert code == 2
    assert message in one_error_line(stderr)


def _click_command() -> typer.core.TyperGroup:
    command = typer.main.get_command(app)
    assert isinstance(command, typer.core.TyperGroup)
    return command


def test_one_meaning_per_short_flag_and_help_on_every_option():
    group = _click_command()
    meaning: dict[str, set[str]] = {}
    missing_help = []
    for name, command in group.commands.items():
        for param in command.params:
            longs = [o for o in param.opts if o.startswith("--")]
            for short in (o for o in param.opts + param.secondary_opts if re.fullmatch(r"-\w", o)):
                meaning.setdefault(short, set()).update(longs)
            if not getattr(param, "help", None):
                missing_help.append(f"{name} {param.name}")
    assert not missing_help, "options without help: " + ", ".join(missing_help)
    ambiguous = {short: longs for short, longs in meaning.items() if len(longs) > 1}
    assert not ambiguous, f"short flags with two meanings: {ambiguous}"


# -- every hint is a command that parses ------------------------------------------------------------

# A command in a message follows a colon ("see: shiploop status"), "e.g.", "&&" or a backtick, or opens it.
HINT = re.compile(r"(?:^|: |`|e\.g\. |&& )shiploop ((?:[a-z][\w-]*)(?: [^;(),`'\"]*)?)")


def _placeholder(source: str) -> str:
    """A plausible value for an f-string's {...}, from what the expression is called."""
    if "url" in source:
        return "http://127.0.0.1:8080/web/"
    if "version" in source or "vid" in source or "candidate" in source or "baseline" in source:
        return "3f9c2a1b7d04"
    if any(word in source for word in ("rps", "weight", "count", "lines", "port")):
        return "10"
    return "web"


def _texts(node: ast.AST) -> list[str]:
    """String constants and f-strings, placeholders filled with plausible words."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        parts = []
        for v in node.values:
            if isinstance(v, ast.Constant):
                parts.append(str(v.value))
            else:
                parts.append(_placeholder(ast.unparse(v).lower()))
        return ["".join(parts)]
    return []


def _message_nodes(tree: ast.AST) -> list[ast.AST]:
    """Strings that can reach a user: not docstrings, and f-strings whole rather than their pieces."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            skip.update(id(v) for v in node.values)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            skip.add(id(node.value))  # a docstring or a bare string statement
    return [n for n in ast.walk(tree) if isinstance(n, ast.JoinedStr | ast.Constant) and id(n) not in skip]


def collect_hints() -> list[tuple[str, str]]:
    hints = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in _message_nodes(ast.parse(path.read_text())):
            for text in _texts(node):
                for m in HINT.finditer(text):
                    cmd = m.group(1).split(" (")[0].strip().rstrip(".:")
                    if cmd.split()[0] in {"is", "was"} or "..." in cmd or "|" in cmd:
                        continue  # prose ("shiploop is up"), or a usage summary
                    hints.append((f"{path.relative_to(PACKAGE)}:{getattr(node, 'lineno', 0)}", cmd))
    return sorted(set(hints))


def test_the_hint_collector_finds_hints():
    commands = {cmd.split()[0] for _, cmd in collect_hints()}
    assert {"up", "status", "logs", "rollout", "init", "versions", "route", "deploy"} <= commands, commands


def test_every_hint_printed_anywhere_is_a_command_the_cli_accepts():
    group = _click_command()
    bad = []
    for where, cmd in collect_hints():
        args = shlex.split(cmd.split(" && ")[0].split(" or ")[0])
        try:
            ctx = group.make_context("shiploop", list(args), resilient_parsing=False)
            with ctx:
                sub = group.get_command(ctx, args[0])
                if sub is None:
                    raise typer.BadParameter(f"no command {args[0]}")
                sub.make_context(args[0], list(args[1:]), parent=ctx)
        except Exception as e:  # noqa: BLE001 - any failure to parse is the finding
            bad.append(f"{where}: shiploop {cmd}: {e}")
    assert not bad, "hints that are not valid commands:\n" + "\n".join(bad)


def test_a_bug_in_a_command_is_one_line_exit_1(capsys, monkeypatch):
    buggy = typer.Typer()

    @buggy.command()
    def boom() -> None:
        raise KeyError("oops")

    @buggy.command()
    def other() -> None:
        pass

    with pytest.raises(SystemExit) as info:
        run_app(buggy, err, ["boom"])
    stderr = capsys.readouterr().err
    assert info.value.code == 1 and "Traceback" not in stderr
    assert one_error_line(stderr).startswith("error: internal error in the shiploop CLI (KeyError")
    monkeypatch.setenv("SHIPLOOP_DEBUG", "1")
    with pytest.raises(KeyError):
        run_app(buggy, err, ["boom"])


def test_status_shows_daemon_text_literally_never_as_markup_or_terminal_control():
    from shiploop.cli.status_text import status_text

    traffic = {"rps": 1.0, "window_s": 10, "source_errors": ["[bold]boom[/] at /metrics\x1b[2J"]}
    version = {"id": "3f9c2a1b7d04", "track": "stable", "weight": 100, "ready": 1, "replicas": 2, "state": "running",
               "traffic": traffic}  # fmt: skip
    status = {
        "project": "p", "gateway": "http://127.0.0.1:8080", "generation": 1,
        "degraded": ["state store not writable: [Errno 30]"],
        "services": [{"name": "web", "versions": [version], "routes": ["regex ^/a[0-9]+$"]}],
    }  # fmt: skip
    for color in (False, True):
        text = status_text(status, color)
        for literal in ("[bold]boom[/] at /metrics?[2J", "[Errno 30]", "^/a[0-9]+$", "3f9c2a1b7d04"):
            assert literal in text, text
        assert "\x1b[2J" not in text
    assert "\x1b[" not in status_text(status, color=False)


def test_an_error_line_with_brackets_is_printed_as_is(capsys):
    code, _, stderr = run(capsys, "route", "web", "--weight", "[bold]v=x")
    assert code == 2 and "'[bold]v=x'" in one_error_line(stderr)


def test_the_status_fast_path_prints_what_the_full_command_line_prints(capsys, monkeypatch, tmp_path):
    import json as jsonlib

    from shiploop.cli import entry, status_fast, status_view
    from shiploop.contract import Status

    answer = {
        "project": "p", "gateway": "http://127.0.0.1:8080", "generation": 2, "api": "http://127.0.0.1:5000",
        "services": [{"name": "web", "versions": [{"id": "3f9c2a1b7d04", "track": "stable", "weight": 100,
                                                   "ready": 2, "replicas": 2, "state": "running"}]}],
    }  # fmt: skip
    # What the daemon sends is the contract's dump (its response_model), so both paths see the same data.
    wire = jsonlib.dumps(Status.model_validate(answer).model_dump(mode="json")).encode()
    (tmp_path / "shiploop.yaml").write_text("name: p\n")
    (tmp_path / ".shiploop").mkdir()
    (tmp_path / ".shiploop" / "daemon.json").write_text('{"pid": 1, "start_time": 1, "api_port": 5000}')
    monkeypatch.chdir(tmp_path)

    def fake_exchange(address, method, target, headers, body, timeout_s):
        assert (address, method, target, body) == (("127.0.0.1", 5000), "GET", "/v1/status", None)
        assert "Authorization" not in headers  # reads are open: no token for whoever holds the port
        return 200, wire

    class FakeClient:
        def __init__(self, root: Path) -> None:
            pass

        def get(self, model: type, path: str) -> Status:
            assert (model, path) == (Status, "/v1/status")
            return Status.model_validate(answer)

    monkeypatch.setattr(status_fast, "exchange", fake_exchange)
    monkeypatch.setattr(status_view, "DaemonClient", FakeClient)
    outputs = []
    for argv in (["status"], ["status", "--json"]):
        monkeypatch.setattr("sys.argv", ["shiploop", *argv])
        with pytest.raises(SystemExit) as info:
            entry.main()
        fast = capsys.readouterr().out
        code, full, _ = run(capsys, *argv)
        assert info.value.code == code == 0
        outputs.append((fast, full))
    (fast_table, full_table), (fast_json, full_json) = outputs
    assert "3f9c2a1b7d04" in fast_table and fast_json == full_json
    assert fast_table == full_table


def test_the_status_fast_path_steps_aside_when_it_cannot_answer(monkeypatch, tmp_path):
    from shiploop.cli import status_fast

    monkeypatch.chdir(tmp_path)
    assert status_fast.fetch_status(tmp_path) is None  # no project
    (tmp_path / "shiploop.yaml").write_text("name: p\n")
    assert status_fast.fetch_status(tmp_path) is None  # no daemon record
    (tmp_path / ".shiploop").mkdir()
    (tmp_path / ".shiploop" / "daemon.json").write_text('{"pid": 1, "start_time": 1, "api_port": 5000}')
    answers = [OSError("refused"), (503, b'{"kind": "Unavailable"}'), (200, b"<html>"), (200, b'{"x": 1}')]
    for answer in answers:
        def fake_exchange(*args, answer=answer):
            if isinstance(answer, Exception):
                raise answer
            return answer

        monkeypatch.setattr(status_fast, "exchange", fake_exchange)
        assert status_fast.fetch_status(tmp_path) is None, answer


def test_status_notes_a_crash_loop_and_nothing_for_a_quiet_replica():
    from shiploop.cli.status_text import status_text

    def version(vid: str, restarts: int, code: int | None, line: str) -> dict[str, object]:
        return {"id": vid, "track": "stable", "weight": 50, "ready": 1, "replicas": 1, "state": "running",
                "restarts": restarts, "last_exit_code": code, "last_log_line": line}  # fmt: skip

    status = {
        "project": "p", "gateway": "http://127.0.0.1:8080", "generation": 1,
        "services": [{"name": "web", "routes": [], "versions": [
            version("aaaaaaaaaaaa", 0, None, "no output"), version("bbbbbbbbbbbb", 3, 1, "KeyError: 'DB'"),
        ]}],
    }  # fmt: skip
    text = status_text(status)
    assert "web@bbbbbbbbbbbb: 3 restarts, last exit code 1: KeyError: 'DB'" in text, text
    assert "web@aaaaaaaaaaaa:" not in text, text  # a replica that never crashed gets no note


def test_status_names_a_running_experiment_and_the_command_for_its_details():
    from shiploop.cli.status_text import status_text
    from shiploop.contract import Status

    version = {"id": "aaaaaaaaaaaa", "track": "stable", "weight": 100, "ready": 1, "replicas": 1, "state": "running"}
    experiment = {"id": 3, "state": "running", "hypothesis": "one field raises signups", "treatment": "bbbbbbbbbbbb"}
    status = {
        "project": "p", "gateway": "http://127.0.0.1:8080", "generation": 1,
        "services": [{"name": "web", "versions": [version], "experiment": experiment}],
    }  # fmt: skip
    assert Status.model_validate(status).services[0].experiment is not None  # the contract carries it
    text = status_text(status)
    assert (
        'web: experiment #3 of bbbbbbbbbbbb is running ("one field raises signups"): shiploop experiment status web'
        in text
    ), text


def test_ctrl_c_while_a_rollout_starts_says_it_may_have_started(capsys, monkeypatch):
    from shiploop.cli import main
    from shiploop.errors import Unavailable

    class InterruptedDuringThePost:  # stands in for the daemon client: Ctrl-C lands while the POST is answered
        def get(self, *_: object) -> None:
            raise Unavailable("no traffic measured yet")

        def post(self, *_: object) -> None:
            raise KeyboardInterrupt

    monkeypatch.setattr(main, "client", InterruptedDuringThePost)
    code, _, stderr = run(capsys, "rollout", "shop", "--wait")
    assert code == 130 and "Traceback" not in stderr
    assert "it may have started" in stderr and "shiploop rollout status shop" in stderr, stderr
