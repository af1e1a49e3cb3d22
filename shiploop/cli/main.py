"""The shiploop command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from shiploop.cli import rollout_view
from shiploop.cli.client import DaemonClient, find_root
from shiploop.cli.starter import write_starter
from shiploop.errors import ShiploopError
from shiploop.naming import ACTIVE_ROLLOUT_STATES
from shiploop.paths import running_daemon, state_dir_of
from shiploop.procs import is_running
from shiploop.server.controlplane import teardown_without_daemon

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Ship a service version, prove it on real traffic.")
console = Console()
err = Console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]
ForceOpt = Annotated[
    bool, typer.Option("--force", help="act even while an automatic rollout owns the service (pauses it)")
]


def _force(force: bool) -> dict[str, str]:
    return {"force": "true"} if force else {}


def client() -> DaemonClient:
    return DaemonClient(find_root(Path.cwd()))


def emit_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


@app.command()
def init(directory: Annotated[Path, typer.Argument()] = Path(".")) -> None:
    """Create a runnable starter project with one service."""
    written = write_starter(directory)
    console.print(
        f"created {directory / 'shiploop.yaml'} and service [bold]{written}[/]; "
        f"next: cd {directory} && shiploop up --detach"
    )


@app.command()
def up(
    detach: Annotated[bool, typer.Option("--detach", "-d", help="return once everything is ready")] = False,
    port: Annotated[int | None, typer.Option("--port", help="gateway port (overrides shiploop.yaml)")] = None,
) -> None:
    """Start the control plane, every service's current code as stable, and Envoy."""
    root = find_root(Path.cwd())
    if running_daemon(root):
        raise ShiploopError("shiploop is already running for this project", hint="see: shiploop status")
    args = [sys.executable, "-m", "shiploop.daemon", str(root)] + (["--port", str(port)] if port else [])
    if not detach:
        os.execv(sys.executable, args)  # the daemon in the foreground; Ctrl-C stops everything
    log = state_dir_of(root) / "logs" / "daemon.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    offset = log.stat().st_size
    with console.status("starting shiploop...") as spinner:
        # Wait for our own daemon: another `up` racing this one may win the project's lock.
        while (running_daemon(root) or {}).get("pid") != proc.pid:
            if proc.poll() is not None:
                raise ShiploopError(_last_error(log) or f"the daemon exited with code {proc.returncode}")
            spinner.update(f"starting shiploop: {_last_progress(log, offset)}")
            time.sleep(0.1)
    status = client().get("/v1/status")
    console.print(f"shiploop is up: gateway [bold]{status['gateway']}[/]")
    for line in log.read_bytes()[offset:].decode(errors="replace").splitlines():
        if "working tree differs from stable" in line:  # up served the last stable, not the files
            console.print(f"[yellow]{escape(line.removeprefix('... '))}[/]")
    _render_status(status)


def _last_progress(log: Path, offset: int) -> str:
    lines = [ln for ln in log.read_bytes()[offset:].decode(errors="replace").splitlines() if ln.startswith("... ")]
    return lines[-1][4:] if lines else "..."


def _last_error(log: Path) -> str | None:
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.startswith("error: ")]
    return lines[-1][7:] if lines else None


@app.command()
def down() -> None:
    """Stop every service, Envoy and the control plane."""
    root = find_root(Path.cwd())
    info = running_daemon(root)
    if info is None:
        n = teardown_without_daemon(root)
        console.print(f"shiploop was not running; stopped {n} leftover processes" if n else "shiploop was not running")
        return
    DaemonClient(root).post("/v1/down")
    deadline = time.monotonic() + 30
    while is_running(info["pid"], info["start_time"]):
        if time.monotonic() > deadline:
            raise ShiploopError(f"the daemon (pid {info['pid']}) did not exit within 30s")
        time.sleep(0.05)
    console.print("shiploop is down")


@app.command()
def status(as_json: JsonOpt = False) -> None:
    """The gateway and, per service, its versions with track, weight and readiness."""
    data = client().get("/v1/status")
    if as_json:
        emit_json(data)
        return
    console.print(f"gateway [bold]{data['gateway']}[/]  (routing generation {data['generation']})")
    _render_status(data)
    _render_health(data)


def _render_health(data: dict[str, Any]) -> None:
    for line in data.get("degraded", []):
        console.print(f"[red]{line}[/]")
    envoy = data.get("envoy") or {}
    if envoy.get("restarts"):
        console.print(f"[yellow]envoy restarted {envoy['restarts']} time(s) by shiploop[/]")


def _render_status(data: dict[str, Any]) -> None:
    table = Table("service", "version", "track", "weight", "ready", "req/s", "5xx", "p95", "routes")
    notes: list[str] = []
    for svc in data["services"]:
        for i, v in enumerate(svc["versions"]):
            ready = f"{v['ready']}/{v['replicas']}"
            style = "green" if v["ready"] == v["replicas"] else "yellow"
            t = v.get("traffic") or {}
            table.add_row(
                svc["name"] if i == 0 else "",
                v["id"],
                v["track"],
                f"{v['weight']}%",
                f"[{style}]{ready}[/]",
                f"{t['rps']:g}" if t else "-",
                f"{t['error_rate']:.2%}" if t.get("error_rate") is not None else "-",
                f"{t['p95_ms']:g} ms" if t.get("p95_ms") is not None else "-",
                ", ".join(svc["routes"]) if i == 0 else "",
            )
            notes.extend(f"{svc['name']}@{v['id']}: metrics: {e}" for e in t.get("source_errors", []))
            if v.get("restarts"):  # a crash loop: how often, how it ended, what it said last
                code = v.get("last_exit_code")
                notes.append(
                    f"{svc['name']}@{v['id']}: {v['restarts']} restarts, last exit code "
                    f"{code if code is not None else 'unknown'}: {v.get('last_log_line')}"
                )
        for hr in svc.get("header_routes", []):
            table.add_row("", hr["version"], f"header {hr['header']}={hr['value']}", "-", "", "", "", "", "")
    console.print(table)
    for note in notes:
        console.print(f"[yellow]{escape(note)}[/]")  # log lines may hold [brackets]
    for svc in data["services"]:
        r = svc.get("rollout")
        if r and r["state"] in ACTIVE_ROLLOUT_STATES:
            console.print(
                f"{svc['name']}: rollout #{r['id']} of {r['candidate']} is {r['state']} at step "
                f"{r['step'] + 1} ({r['weight']}%): shiploop rollout status {svc['name']}"
            )


@app.command()
def deploy(
    service: str,
    weight: Annotated[int, typer.Option("--weight", "-w", min=0, max=100, help="percent of traffic")] = 0,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Snapshot SERVICE's current code and start it beside stable as canary."""
    with console.status(f"deploying {service}..."):
        result = client().call(
            "POST", f"/v1/services/{service}/deploy", json={"weight": weight}, params=_force(force)
        )
    if as_json:
        emit_json(result)
        return
    console.print(f"{service}@[bold]{result['version']}[/] is canary at {result['weight']}%")


@app.command()
def route(
    service: str,
    weight: Annotated[list[str] | None, typer.Option("--weight", "-w", help="VERSION=PERCENT, repeatable")] = None,
    header: Annotated[str | None, typer.Option("--header", help="NAME=VALUE: requests with it go to --to")] = None,
    to: Annotated[str | None, typer.Option("--to", help="VERSION for --header")] = None,
    remove_header: Annotated[str | None, typer.Option("--remove-header", help="NAME or NAME=VALUE to remove")] = None,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Set traffic weights between versions, or route requests by header to one version."""
    c = client()
    if weight:
        weights = dict(_key_value(w, "--weight", "VERSION=PERCENT") for w in weight)
        try:
            parsed = {k: int(v) for k, v in weights.items()}
        except ValueError:
            raise ShiploopError("--weight takes VERSION=PERCENT with a whole number, e.g. --weight 3f9c=20") from None
        result: Any = c.call(
            "POST", f"/v1/services/{service}/weights", json={"weights": parsed}, params=_force(force)
        )
        text = ", ".join(f"{v}={w}%" for v, w in result.items())
    elif header:
        if not to:
            raise ShiploopError(
                "--header needs --to VERSION", hint="e.g. shiploop route web --header x-user=ana --to canary"
            )
        name, value = _key_value(header, "--header", "NAME=VALUE")
        body = {"header": name, "value": value, "version": to}
        result = c.call("POST", f"/v1/services/{service}/header-routes", json=body, params=_force(force))
        text = f"{result['header']}: {result['value']} -> {service}@{result['version']}"
    elif remove_header:
        name, _, value = remove_header.partition("=")
        result = c.call(
            "DELETE",
            f"/v1/services/{service}/header-routes/{name}",
            params={**({"value": value} if value else {}), **_force(force)},
        )
        text = f"removed {result['removed']} header route(s)"
    else:
        raise ShiploopError(
            "route needs --weight, --header with --to, or --remove-header",
            hint="e.g. shiploop route web --weight canary=20",
        )
    if as_json:
        emit_json(result)
    else:
        console.print(text)


def _key_value(text: str, option: str, form: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key or not value:
        raise ShiploopError(f"{option} '{text}' is not {form}")
    return key, value


@app.command()
def promote(service: str, force: ForceOpt = False, as_json: JsonOpt = False) -> None:
    """Make the canary stable; the old stable stops once it drains."""
    result = client().call("POST", f"/v1/services/{service}/promote", json={}, params=_force(force))
    emit_json(result) if as_json else console.print(f"{service}@[bold]{result['stable']}[/] is stable")


@app.command()
def rollback(service: str, force: ForceOpt = False, as_json: JsonOpt = False) -> None:
    """Send all traffic to stable and stop the canary."""
    result = client().call("POST", f"/v1/services/{service}/rollback", json={}, params=_force(force))
    emit_json(result) if as_json else console.print(f"all traffic to {service}@[bold]{result['stable']}[/]")


@app.command()
def versions(service: str, as_json: JsonOpt = False) -> None:
    """Every version of SERVICE ever built, newest last."""
    rows = client().get(f"/v1/services/{service}/versions")
    if as_json:
        emit_json(rows)
        return
    table = Table("version", "built", "track", "weight")
    for v in rows:
        built = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(v["created_at"]))
        table.add_row(v["id"], built, v["track"] or "-", f"{v['weight']}%" if v["weight"] is not None else "-")
    console.print(table)


@app.command()
def logs(
    service: str,
    version: Annotated[str | None, typer.Option("--version", "-v", help="one version (id, prefix or track)")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f")] = False,
    lines: Annotated[int, typer.Option("--lines", "-n")] = 50,
) -> None:
    """Print the replicas' logs of SERVICE."""
    files = [Path(f) for f in client().get(f"/v1/services/{service}/logs", version=version)["files"]]
    offsets = {}
    for f in files:
        text = f.read_text(errors="replace") if f.exists() else ""
        for line in text.splitlines()[-lines:]:
            print(f"{f.stem} | {line}")
        offsets[f] = len(text.encode())
    while follow:
        for f in files:
            data = f.read_bytes()[offsets[f] :] if f.exists() else b""
            offsets[f] += len(data)
            for line in data.decode(errors="replace").splitlines():
                print(f"{f.stem} | {line}", flush=True)
        time.sleep(0.2)


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
    second: Annotated[str | None, typer.Argument(metavar="", show_default=False)] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="watch until it ends: exit 0 promoted, 3 rolled back, 4 held")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Roll the current code of SERVICE out step by step, judged against stable; or act on a rollout."""
    c = client()
    if second is None:
        service = first
        try:  # Up front: a policy the measured traffic cannot carry out (issue 7.7).
            for warning in c.get(f"/v1/services/{service}/rollout/plan")["warnings"]:
                err.print(f"warning: {warning}; see: shiploop rollout plan {service}")
        except ShiploopError:
            pass  # no traffic measured yet: nothing to warn about
        with console.status(f"starting the candidate of {service}..."):
            r = c.post(f"/v1/services/{service}/rollout")
        if not wait:
            emit_json(r) if as_json else console.print(
                f"rollout #{r['id']}: {service}@{r['candidate']} against {r['baseline']}, {r['state']}; "
                f"follow it with: shiploop rollout status {service}"
            )
            return
        _watch(c, service, as_json)
        return
    action, service = first, second
    if action not in ROLLOUT_ACTIONS:
        raise ShiploopError(f"unknown rollout action '{action}'", hint=f"one of: {', '.join(ROLLOUT_ACTIONS)}")
    if action == "plan":
        r = c.get(f"/v1/services/{service}/rollout/plan")
        emit_json(r) if as_json else console.print(rollout_view.render_plan(r))
        return
    if action == "status":
        if wait:
            _watch(c, service, as_json)
            return
        r = c.get(f"/v1/services/{service}/rollout")
    else:
        r = c.post(f"/v1/services/{service}/rollout/{action}")
    emit_json(r) if as_json else console.print(rollout_view.render(r))


def _watch(c: DaemonClient, service: str, as_json: bool) -> None:
    """Follow a rollout live until it ends, then exit with its outcome's code."""
    from rich.live import Live

    r = c.get(f"/v1/services/{service}/rollout")
    if as_json:
        while r["state"] not in rollout_view.EXIT_CODES:
            time.sleep(1)
            r = c.get(f"/v1/services/{service}/rollout")
        emit_json(r)
    else:
        seen_events: set[int] = set()
        with Live(rollout_view.render(r), console=console, refresh_per_second=2) as live:
            while r["state"] not in rollout_view.EXIT_CODES:
                time.sleep(1)
                r = c.get(f"/v1/services/{service}/rollout")
                for e in c.get("/v1/events", service=service, limit=20):
                    if e["kind"].startswith("rollout-") and e["id"] not in seen_events and e["ts"] >= r["started_at"]:
                        seen_events.add(e["id"])
                        live.console.print(
                            f"[dim]{time.strftime('%H:%M:%S', time.localtime(e['ts']))}[/] "
                            f"{e['kind'][8:]}: {e['message']}"
                        )
                live.update(rollout_view.render(r))
    raise typer.Exit(rollout_view.EXIT_CODES[r["state"]])


@app.command()
def history(service: str, as_json: JsonOpt = False) -> None:
    """Past rollouts of SERVICE with their outcome and the decisive evidence."""
    rows = client().get(f"/v1/services/{service}/rollouts")
    emit_json(rows) if as_json else console.print(rollout_view.history_table(rows))


@app.command()
def load(
    url: str,
    rps: Annotated[float, typer.Option("--rps", help="requests per second, constant arrival rate")] = 50.0,
    duration: Annotated[str, typer.Option("--duration", "-d", help="e.g. 30s, 2m")] = "10s",
    header: Annotated[list[str] | None, typer.Option("--header", "-H", help="K=V, repeatable")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Open-loop load: send requests at a constant rate whatever the answers, report statuses and latency."""
    from shiploop.loadgen import run_load_sync
    from shiploop.spec import parse_duration

    try:
        seconds = parse_duration(duration)
    except ValueError as e:
        raise ShiploopError(f"--duration '{duration}': {e}", hint="e.g. 30s, 2m, 500ms") from None
    headers = dict(_key_value(h, "--header", "K=V") for h in header or [])
    report = run_load_sync(url, rps, seconds, headers=headers, capture_headers=("x-shiploop-version",))
    print(json.dumps(report.as_dict(), indent=2)) if as_json else print(report.render())


def main() -> None:
    try:
        code = app(standalone_mode=False)
        # Without standalone mode click returns typer.Exit codes instead of exiting.
        sys.exit(code if isinstance(code, int) else 0)
    except ShiploopError as e:
        err.print(f"[red]error:[/] {e.line()}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except Exception as e:  # click usage errors
        import click

        if isinstance(e, click.exceptions.ClickException):
            err.print(f"[red]error:[/] {e.format_message()}", highlight=False, soft_wrap=True)
            sys.exit(2)
        raise
