"""The shiploop command line: every command, parsed by typer, answers parsed with shiploop.contract.

Start-up matters (issue 8, item 6): importing this module imports typer and
shiploop's own light modules, nothing else: not FastAPI, the control plane or
the spec models, and not pydantic, the contract's models, rich, asyncio or ssl
either (tests/unit/test_cli_startup.py). A command imports what it uses inside
(the contract's models where it parses an answer, rich where it prints with
it), so each pays only for that. `shiploop status [--json]` does not come here
at all: cli/entry.py answers it without typer. Errors end as cli/usage.py and
cli/guard.py say.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from shiploop.cli.agent_cmd import agent
from shiploop.cli.client import DaemonClient, segment
from shiploop.cli.consoles import LazyConsole
from shiploop.cli.controller_cmd import controller
from shiploop.cli.dashboard_cmd import dashboard
from shiploop.cli.dev import dev
from shiploop.cli.experiment import experiment_app
from shiploop.cli.export_cmd import alerts_app, dashboards_app
from shiploop.cli.images_cmd import build
from shiploop.cli.intercept_cmd import intercept, intercepts
from shiploop.cli.prometheus_cmd import prometheus_config_command
from shiploop.cli.remote import project_root
from shiploop.cli.render_cmd import render
from shiploop.cli.status_view import emit_json, id_column, render_status, show_status, status_view
from shiploop.cli.token_cmd import token_app
from shiploop.cli.usage import key_value, run_app
from shiploop.errors import Invalid, ShiploopError, Unavailable
from shiploop.paths import ProjectPaths, find_root, running_daemon
from shiploop.procs import free_port, is_running

if TYPE_CHECKING:
    from pydantic import BaseModel

    from shiploop.contract import Event, Rollout

app = typer.Typer(
    help="Ship a service version, prove it on real traffic.",
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
console = LazyConsole()
err = LazyConsole(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]
ForceOpt = Annotated[
    bool, typer.Option("--force", help="act even while an automatic rollout owns the service (pauses it)")
]
ServiceArg = Annotated[str, typer.Argument(metavar="SERVICE", help="the service's name, as in its service.yaml")]


def _version_callback(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as package_version

        try:
            print(f"shiploop {package_version('shiploop')}")
        except PackageNotFoundError:
            print("shiploop (not installed as a package)")
        raise typer.Exit()


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version_callback, is_eager=True, help="print shiploop's version and exit"),
    ] = False,
) -> None:
    """Ship a service version, prove it on real traffic."""
    if ctx.invoked_subcommand is None:
        print(ctx.get_help())
        raise typer.Exit(0)


def client() -> DaemonClient:
    return DaemonClient(project_root())


# -- lifecycle ------------------------------------------------------------------------------------


@app.command()
def init(
    directory: Annotated[
        Path, typer.Argument(metavar="[DIR]", help="where to create the project (made if missing)")
    ] = Path("."),
) -> None:
    """Create a runnable starter project with one service."""
    from shiploop.cli.starter import write_starter

    written = write_starter(directory)
    here = directory.resolve() == Path.cwd().resolve()
    console.print(
        f"created {directory / 'shiploop.yaml'} and service {written}; "
        f"next: {'' if here else f'cd {directory} && '}shiploop up --detach",
        soft_wrap=True,
        markup=False,
        highlight=False,
    )


@app.command()
def up(
    detach: Annotated[bool, typer.Option("--detach", "-d", help="return once everything is ready")] = False,
    port: Annotated[
        int | None,
        typer.Option(
            "--port", "-p", min=0, max=65535, help="gateway port (overrides shiploop.yaml); 0 picks a free one"
        ),
    ] = None,
    prometheus: Annotated[bool, typer.Option("--prometheus", help="also run a Prometheus scraping it")] = False,
    listen: Annotated[
        str | None,
        typer.Option(
            "--listen",
            metavar="HOST[:PORT]",
            help="share it: the API over TLS and the gateway on HOST too, for other machines (port 7443)",
        ),
    ] = None,
) -> None:
    """Start the control plane, every service's current code as stable, and Envoy."""
    root = find_root(Path.cwd())
    paths = ProjectPaths(root)
    if running_daemon(root):
        raise ShiploopError("shiploop is already running for this project", hint="see: shiploop status")
    if port == 0:
        port = free_port()
    args = [sys.executable, "-m", "shiploop.daemon", str(root)] + (["--port", str(port)] if port else [])
    args += ["--prometheus"] if prometheus else []
    args += ["--listen", listen] if listen else []
    if not detach:
        os.execv(sys.executable, args)  # the daemon in the foreground; Ctrl-C stops everything
    import subprocess

    log = paths.daemon_log
    log.parent.mkdir(parents=True, exist_ok=True)
    offset = log.stat().st_size if log.exists() else 0
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    with console.status("starting shiploop...") as spinner:
        # Wait for our own daemon: another `up` racing this one may win the project's lock.
        while (running_daemon(root) or {}).get("pid") != proc.pid:
            if proc.poll() is not None:
                raise ShiploopError(
                    _last_error(log, offset) or f"the daemon exited with code {proc.returncode} (see {log})"
                )
            spinner.update(f"starting shiploop: {_last_progress(log, offset)}")
            time.sleep(0.1)
    from shiploop.contract import Status

    status = client().get(Status, "/v1/status")
    console.print(f"shiploop is up: gateway [bold]{status.gateway}[/]", soft_wrap=True)
    for line in _new_lines(log, offset):
        if "working tree differs from stable" in line:  # up served the last stable, not the files
            console.print(line.removeprefix("... "), style="yellow", markup=False)
    render_status(console, status)
    shared = (running_daemon(root) or {}).get("remote")
    if isinstance(shared, dict):
        console.print(
            f"shared on {shared['url']}: copy the certificate {shared['cert']} to each developer's machine; "
            "make each a token with: shiploop token create NAME",
            soft_wrap=True,
            markup=False,
            highlight=False,
        )


def _new_lines(log: Path, offset: int) -> list[str]:
    return log.read_bytes()[offset:].decode(errors="replace").splitlines()


def _last_progress(log: Path, offset: int) -> str:
    lines = [ln for ln in _new_lines(log, offset) if ln.startswith("... ")]
    return lines[-1][4:] if lines else "..."


def _last_error(log: Path, offset: int) -> str | None:
    lines = [ln for ln in _new_lines(log, offset) if ln.startswith("error: ")]
    return lines[-1][7:] if lines else None


@app.command()
def down() -> None:
    """Stop every service, Envoy and the control plane."""
    root = find_root(Path.cwd())
    info = running_daemon(root)
    if info is None:
        # Only here: the teardown needs the store and the gateway, which `status` must not import.
        from shiploop.server.controlplane import teardown_without_daemon

        n = teardown_without_daemon(root)
        console.print(f"shiploop was not running; stopped {n} leftover processes" if n else "shiploop was not running")
        return
    DaemonClient(root).request("POST", "/v1/down", {})
    deadline = time.monotonic() + 30
    while is_running(info["pid"], info["start_time"]):
        if time.monotonic() > deadline:
            raise Unavailable(
                f"the daemon (pid {info['pid']}) did not exit within 30s", hint=f"see {ProjectPaths(root).daemon_log}"
            )
        time.sleep(0.05)
    console.print("shiploop is down")


# -- reading --------------------------------------------------------------------------------------


@app.command()
def status(
    as_json: JsonOpt = False,
    watch: Annotated[bool, typer.Option("--watch", help="redraw every second until Ctrl-C")] = False,
) -> None:
    """The gateway and, per service, its versions with track, weight and readiness."""
    if not watch:
        show_status(console, as_json)  # the same as the fast path of cli/entry.py
        return
    from shiploop.contract import Status

    c = client()
    data = c.get(Status, "/v1/status")
    try:
        if as_json or not console.is_terminal:  # piped: a frame a second (JSON: one object a line)
            while True:
                if as_json:
                    print(json.dumps(data.model_dump(mode="json")), flush=True)
                else:
                    render_status(console, data)
                    print(flush=True)
                time.sleep(1)
                data = c.get(Status, "/v1/status")
        from rich.live import Live

        with Live(status_view(data), console=console.real, refresh_per_second=2, auto_refresh=False) as live:
            while True:
                time.sleep(1)
                live.update(status_view(c.get(Status, "/v1/status")), refresh=True)
    except KeyboardInterrupt:
        pass


@app.command()
def versions(service: ServiceArg, as_json: JsonOpt = False) -> None:
    """Every version of SERVICE ever built, newest last."""
    from rich.table import Table

    from shiploop.contract import VersionInfo

    rows = client().call_list(VersionInfo, "GET", f"/v1/services/{segment(service)}/versions")
    if as_json:
        emit_json(rows)
        return
    table = Table()
    id_column(table, "version")
    for name in ("built", "track", "weight"):
        table.add_column(name)
    for v in rows:
        built = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(v.created_at))
        table.add_row(v.id, built, v.track or "-", f"{v.weight}%" if v.weight is not None else "-")
    console.print(table)


@app.command()
def logs(
    service: ServiceArg,
    version: Annotated[
        str | None, typer.Option("--version", help="one version: an id, a unique prefix, or stable/canary/shadow")
    ] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep printing new lines, new replicas too")] = False,
    lines: Annotated[int, typer.Option("--lines", "-n", min=0, help="lines of each replica's past to print")] = 50,
) -> None:
    """Print the replicas' logs of SERVICE, from disk: any version, daemon up or down."""
    from shiploop.cli import logs as replica_logs

    paths = ProjectPaths(find_root(Path.cwd()))
    vid = replica_logs.resolve_version(paths, service, version) if version else None
    files = replica_logs.log_files(paths, service, vid)
    if not files and not follow:
        what = f"{service}@{vid}" if vid else service
        raise ShiploopError(f"{what} has no log files in {paths.logs / service}", hint="see: shiploop status")
    for f, line in replica_logs.tail(files, lines):
        print(f"{f.replica} | {line}")
    if not follow:
        return

    def emit(ts: float, f: replica_logs.LogFile, line: str) -> None:
        stamp = time.strftime("%H:%M:%S", time.localtime(ts)) + f".{int(ts % 1 * 1000):03d}"
        print(f"{stamp} {f.replica} | {line}", flush=True)

    def ready() -> None:
        err.print(f"following the logs of {what}, new replicas too; Ctrl-C to stop", highlight=False, soft_wrap=True)

    what = f"{service}@{vid}" if vid else service
    try:
        replica_logs.follow(lambda: replica_logs.log_files(paths, service, vid), emit, on_ready=ready)
    except KeyboardInterrupt:
        pass


@app.command()
def events(
    service: Annotated[
        str | None, typer.Argument(metavar="[SERVICE]", help="only this service's events (default: all)")
    ] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep printing new events until Ctrl-C")] = False,
    lines: Annotated[int, typer.Option("--lines", "-n", min=0, max=10_000, help="how many past events")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """The timeline of every transition (deploys, weights, rollout steps and decisions) with its evidence."""
    from shiploop.contract import Event

    root = find_root(Path.cwd())
    if running_daemon(root) is None and not follow:
        # After a crash or a `down`, what happened is still in the store: read it there.
        for e in _stored_events(ProjectPaths(root), service, lines):
            _print_event(e, as_json)
        return
    c = DaemonClient(root)
    past = c.call_list(Event, "GET", "/v1/events", service=service, limit=lines) if lines else []
    last_id = past[-1].id if past else _last_event_id(c, service)
    for e in past:
        _print_event(e, as_json)
    try:
        while follow:
            time.sleep(1)
            for e in c.call_list(Event, "GET", "/v1/events", service=service, after=last_id, limit=1000):
                _print_event(e, as_json)
                last_id = e.id
    except KeyboardInterrupt:
        pass


def _stored_events(paths: ProjectPaths, service: str | None, limit: int) -> list[Event]:
    import sqlite3

    from shiploop.contract import Event

    if not paths.db.exists() or limit == 0:
        return []
    sql = "SELECT id, ts, service, kind, message, evidence FROM events"
    args: tuple[object, ...] = ()
    if service is not None:
        sql, args = sql + " WHERE service=?", (service,)
    db = sqlite3.connect(f"file:{paths.db}?mode=ro", uri=True, timeout=2.0)
    try:
        rows = db.execute(sql + " ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
    except sqlite3.Error as e:
        raise Unavailable(f"cannot read {paths.db}: {e}") from None
    finally:
        db.close()
    keys = ("id", "ts", "service", "kind", "message", "evidence")
    return [
        Event.model_validate({**dict(zip(keys, row, strict=True)), "evidence": json.loads(row[5]) if row[5] else None})
        for row in reversed(rows)
    ]


def _last_event_id(c: DaemonClient, service: str | None) -> int:
    from shiploop.contract import Event

    latest = c.call_list(Event, "GET", "/v1/events", service=service, limit=1)
    return latest[-1].id if latest else 0


def _print_event(e: Event, as_json: bool) -> None:
    if as_json:
        print(json.dumps(e.model_dump(mode="json")), flush=True)  # one object a line: easy to pipe
        return
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.ts))
    print(f"{stamp}  {e.service or '-'}  {e.kind}: {e.message}", flush=True)
    if e.evidence:
        print("    " + json.dumps(e.evidence, separators=(", ", ": "), default=str), flush=True)


# -- changes --------------------------------------------------------------------------------------


@app.command()
def deploy(
    ctx: typer.Context,
    service: Annotated[
        str | None, typer.Argument(metavar="SERVICE", help="the service's name (local target: required)")
    ] = None,
    weight: Annotated[int, typer.Option("--weight", "-w", min=0, max=100, help="percent of traffic, 0 to 100")] = 0,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
    target: Annotated[str, typer.Option("--target", help="local (the daemon) or kubernetes")] = "local",
    profile: Annotated[str | None, typer.Option("--profile", help="kubernetes: a profile of shiploop.yaml")] = None,
    context: Annotated[str | None, typer.Option("--context", help="kubernetes: the kubeconfig context")] = None,
    namespace: Annotated[str | None, typer.Option("--namespace", help="kubernetes: overrides the profile's")] = None,
    timeout: Annotated[float, typer.Option("--timeout", min=1, help="kubernetes: seconds to wait for readiness")] = 300,
) -> None:
    """Snapshot SERVICE's current code and start it beside stable as canary (--target kubernetes: apply
    what `shiploop render` prints to a cluster, prune, and wait for it)."""
    if target == "kubernetes":
        from shiploop.cli.k8s_deploy_cmd import deploy_to_kubernetes

        deploy_to_kubernetes(profile, context, namespace, timeout)
        return
    if target != "local":
        raise Invalid(f"unknown target {target!r}", hint="shiploop deploy --target kubernetes")
    if service is None:
        from shiploop.cli.usage import click_exceptions

        raise click_exceptions.MissingParameter(ctx=ctx, param_type="argument", param_hint="'SERVICE'")
    from shiploop.contract import Deployed

    with console.status(f"deploying {service}..."):
        result = client().post(Deployed, f"/v1/services/{segment(service)}/deploy", {"weight": weight}, **_force(force))
    if as_json:
        emit_json(result)
        return
    console.print(f"{service}@[bold]{result.version}[/] is canary at {result.weight}%", soft_wrap=True)


@app.command()
def route(
    service: ServiceArg,
    weight: Annotated[
        list[str] | None, typer.Option("--weight", "-w", help="VERSION=PERCENT, repeatable, one per version")
    ] = None,
    header: Annotated[
        str | None, typer.Option("--header", "-H", help="NAME=VALUE: requests with this header go to --to")
    ] = None,
    to: Annotated[str | None, typer.Option("--to", help="the VERSION --header sends to")] = None,
    remove_header: Annotated[
        str | None, typer.Option("--remove-header", help="NAME or NAME=VALUE: remove that header route")
    ] = None,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Set traffic weights between versions, or route requests by header to one version."""
    given = [
        opt for opt, val in (("--weight", weight), ("--header", header), ("--remove-header", remove_header)) if val
    ]
    if len(given) > 1:
        raise Invalid(f"{' and '.join(given)} cannot be combined", hint="one change per command, e.g. two commands")
    if to is not None and not header:
        raise Invalid("--to goes with --header", hint=f"e.g. shiploop route {service} --header x-user=ana --to canary")
    if not given:
        raise Invalid(
            "route needs --weight, --header with --to, or --remove-header",
            hint=f"e.g. shiploop route {service} --weight canary=20",
        )
    if header and not to:
        raise Invalid(
            "--header needs --to VERSION", hint=f"e.g. shiploop route {service} --header x-user=ana --to canary"
        )
    # Parse everything before talking to the daemon: a malformed option never half-applies.
    from shiploop.contract import HeaderRemoved, HeaderRoute, Weights

    base = f"/v1/services/{segment(service)}"
    if weight:
        weights = _weights(weight)
        changed = client().post(Weights, f"{base}/weights", {"weights": weights}, **_force(force))
        _print_result(changed, ", ".join(f"{v}={w}%" for v, w in changed.weights.items()), as_json)
    elif header:
        name, value = key_value(header, "--header", "NAME=VALUE")
        body = {"header": name, "value": value, "version": to}
        hr = client().post(HeaderRoute, f"{base}/header-routes", body, **_force(force))
        _print_result(hr, f"{hr.header}: {hr.value} -> {service}@{hr.version}", as_json)
    else:
        assert remove_header is not None
        name, _, value = remove_header.partition("=")
        if not name:
            raise Invalid(f"--remove-header '{remove_header}' has no header name", hint="e.g. --remove-header x-user")
        removed = client().call(
            HeaderRemoved,
            "DELETE",
            f"{base}/header-routes/{segment(name)}",
            value=value if value else None,
            **_force(force),
        )
        _print_result(removed, f"removed {removed.removed} header route(s)", as_json)


def _force(force: bool) -> dict[str, str]:
    # The daemon refuses a hand change while a rollout owns the service unless forced.
    return {"force": "true"} if force else {}


def _print_result(result: BaseModel, text: str, as_json: bool) -> None:
    if as_json:
        emit_json(result)
    else:
        console.print(text, soft_wrap=True, markup=False, highlight=False)


def _weights(pairs: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for text in pairs:
        ref, value = key_value(text, "--weight", "VERSION=PERCENT")
        if ref in out:
            raise Invalid(f"--weight gives {ref} twice ({ref}={out[ref]} and {text})", hint="give each version once")
        try:
            out[ref] = int(value)
        except ValueError:
            raise Invalid(
                f"--weight '{text}' is not VERSION=PERCENT with a whole number", hint="e.g. --weight canary=20"
            ) from None
    return out


@app.command()
def promote(service: ServiceArg, force: ForceOpt = False, as_json: JsonOpt = False) -> None:
    """Make the canary stable; the old stable stops once it drains."""
    from shiploop.contract import Promoted

    result = client().post(Promoted, f"/v1/services/{segment(service)}/promote", **_force(force))
    emit_json(result) if as_json else console.print(f"{service}@[bold]{result.stable}[/] is stable", soft_wrap=True)


@app.command()
def rollback(service: ServiceArg, force: ForceOpt = False, as_json: JsonOpt = False) -> None:
    """Send all traffic to stable and stop the canary."""
    from shiploop.contract import RolledBack

    result = client().post(RolledBack, f"/v1/services/{segment(service)}/rollback", **_force(force))
    if as_json:
        emit_json(result)
    else:
        console.print(f"all traffic to {service}@[bold]{result.stable}[/]", soft_wrap=True)


# -- experiments ----------------------------------------------------------------------------------

app.add_typer(experiment_app, name="experiment")

# -- rollouts -------------------------------------------------------------------------------------

ROLLOUT_ACTIONS = ("status", "plan", "pause", "resume", "abort", "promote")


@app.command(name="rollout")
def rollout_cmd(
    first: Annotated[
        str,
        typer.Argument(
            metavar="[ACTION] SERVICE",
            help="SERVICE, or one of status|plan|pause|resume|abort|promote followed by SERVICE",
        ),
    ],
    second: Annotated[str | None, typer.Argument(metavar="", show_default=False, help="SERVICE after ACTION")] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="watch until it ends: exit 0 promoted, 3 rolled back, 4 held")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Roll the current code of SERVICE out step by step, judged against stable; or act on a rollout."""
    from shiploop.cli import rollout_view
    from shiploop.contract import Rollout, RolloutPlan

    c = client()
    if second is None:
        service = first
        try:  # Up front: a policy the measured traffic cannot carry out (issue 7.7).
            for warning in c.get(RolloutPlan, f"/v1/services/{segment(service)}/rollout/plan").warnings:
                err.print(
                    f"warning: {warning}; see: shiploop rollout plan {service}",
                    markup=False,
                    highlight=False,
                    soft_wrap=True,
                )
        except ShiploopError:
            pass  # no traffic measured yet: nothing to warn about
        try:
            with console.status(f"starting the candidate of {service}..."):
                r = c.post(Rollout, f"/v1/services/{segment(service)}/rollout")
        except KeyboardInterrupt:
            # The request may have reached the daemon: say where to look, not that nothing happened.
            err.print(
                f"interrupted while the rollout of {service} was starting; it may have started. See: "
                f"shiploop rollout status {service} (or stop it: shiploop rollout abort {service})",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(130) from None
        if not wait:
            emit_json(r) if as_json else console.print(
                f"rollout #{r.id}: {service}@{r.candidate} against {r.baseline}, {r.state}; "
                f"follow it with: shiploop rollout status {service}",
                soft_wrap=True,
            )
            return
        _watch(c, service, as_json)
        return
    action, service = first, second
    if action not in ROLLOUT_ACTIONS:
        raise Invalid(f"unknown rollout action '{action}'", hint=f"one of: {', '.join(ROLLOUT_ACTIONS)}")
    if action == "plan":
        plan = c.get(RolloutPlan, f"/v1/services/{segment(service)}/rollout/plan")
        emit_json(plan) if as_json else console.print(rollout_view.render_plan(plan.model_dump()))
        return
    if action == "status":
        if wait:
            _watch(c, service, as_json)
            return
        r = c.get(Rollout, f"/v1/services/{segment(service)}/rollout")
    else:
        r = c.post(Rollout, f"/v1/services/{segment(service)}/rollout/{action}")
    emit_json(r) if as_json else console.print(rollout_view.render(r.model_dump()))


def _watch(c: DaemonClient, service: str, as_json: bool) -> None:
    """Follow a rollout live until it ends, then exit with its outcome's code."""
    from shiploop.cli import rollout_view

    try:
        r = _watch_until_done(c, service, as_json)
    except KeyboardInterrupt:
        # Ctrl-C stops watching, not the rollout: the daemon carries on judging it.
        err.print(
            f"stopped watching; the rollout of {service} goes on. Follow it with: "
            f"shiploop rollout status {service} --wait (or stop it: shiploop rollout abort {service})",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(130) from None
    raise typer.Exit(rollout_view.EXIT_CODES[r.state])


def _watch_until_done(c: DaemonClient, service: str, as_json: bool) -> Rollout:
    from rich.live import Live

    from shiploop.cli import rollout_view
    from shiploop.contract import Event, Rollout

    path = f"/v1/services/{segment(service)}/rollout"
    r = c.get(Rollout, path)
    if as_json:
        while r.state not in rollout_view.EXIT_CODES:
            time.sleep(1)
            r = c.get(Rollout, path)
        emit_json(r)
        return r
    seen_events: set[int] = set()
    with Live(rollout_view.render(r.model_dump()), console=console.real, refresh_per_second=2) as live:
        while r.state not in rollout_view.EXIT_CODES:
            time.sleep(1)
            r = c.get(Rollout, path)
            for e in c.call_list(Event, "GET", "/v1/events", service=service, limit=20):
                if e.kind.startswith("rollout-") and e.id not in seen_events and e.ts >= r.started_at:
                    seen_events.add(e.id)
                    live.console.print(
                        f"[dim]{time.strftime('%H:%M:%S', time.localtime(e.ts))}[/] {e.kind[8:]}: {e.message}"
                    )
            live.update(rollout_view.render(r.model_dump()))
    return r


@app.command()
def history(service: ServiceArg, as_json: JsonOpt = False) -> None:
    """Past rollouts of SERVICE with their outcome and the decisive evidence."""
    from shiploop.cli import rollout_view
    from shiploop.contract import Rollout

    rows = client().call_list(Rollout, "GET", f"/v1/services/{segment(service)}/rollouts")
    if as_json:
        emit_json(rows)
        return
    table = rollout_view.history_table([r.model_dump() for r in rows])
    for column in table.columns:
        if str(column.header) in ("candidate", "baseline", "version"):
            column.no_wrap, column.overflow, column.min_width = True, "ignore", 12  # ids are arguments: whole
    console.print(table)


# -- load -----------------------------------------------------------------------------------------


@app.command()
def load(
    url: Annotated[str, typer.Argument(metavar="URL", help="the http:// URL to send requests to")],
    rps: Annotated[float, typer.Option("--rps", "-r", help="requests per second, constant arrival rate")] = 50.0,
    duration: Annotated[str, typer.Option("--duration", "-t", help="how long, e.g. 30s, 2m")] = "10s",
    header: Annotated[list[str] | None, typer.Option("--header", "-H", help="NAME=VALUE to send, repeatable")] = None,
    max_unanswered: Annotated[
        float,
        typer.Option(
            "--max-unanswered",
            min=0.0,
            max=1.0,
            help="exit 1 when more than this share of requests got no HTTP response (refused, timed out)",
        ),
    ] = 0.1,
    as_json: JsonOpt = False,
) -> None:
    """Open-loop load: send requests at a constant rate whatever the answers, report statuses and latency."""
    from shiploop.cli.load import run_load_command

    run_load_command(url, rps, duration, dict(key_value(h, "--header", "NAME=VALUE") for h in header or []),
                     max_unanswered, as_json)  # fmt: skip


app.command("prometheus-config")(prometheus_config_command)
app.command()(dashboard)
app.add_typer(dashboards_app, name="dashboards")
app.add_typer(alerts_app, name="alerts")
app.add_typer(token_app, name="token")
app.command()(build)
app.command()(render)
app.command()(agent)
app.command()(controller)
app.command()(intercept)
app.command()(intercepts)
app.command()(dev)


def main() -> None:
    run_app(app, err)
