"""`shiploop experiment plan|start|status|stop|history|report SERVICE`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from shiploop.cli.client import DaemonClient, segment
from shiploop.cli.consoles import LazyConsole
from shiploop.cli.status_view import emit_json
from shiploop.errors import Invalid
from shiploop.paths import find_root

experiment_app = typer.Typer(
    help="Test a hypothesis: the candidate against stable on a sticky split of units, measured in the gateway.",
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    rich_markup_mode=None,
)
console = LazyConsole()
err = LazyConsole(stderr=True)

ServiceArg = Annotated[str, typer.Argument(metavar="SERVICE", help="the service's name, as in its service.yaml")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of text")]
WaitOpt = Annotated[
    bool, typer.Option("--wait", help="watch until it ends: exit 0 shipped, 3 stopped, 4 inconclusive or held")
]


def _client() -> DaemonClient:
    return DaemonClient(find_root(Path.cwd()))


def _path(service: str, tail: str = "") -> str:
    return f"/v1/services/{segment(service)}/experiment{tail}"


@experiment_app.command()
def plan(
    service: ServiceArg,
    baseline: Annotated[
        float | None, typer.Option("--baseline", help="the primary metric's rate now (default: last experiment's)")
    ] = None,
    units_per_second: Annotated[
        float | None, typer.Option("--units-per-second", help="new units a second (default: measured)")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """How long until the MDE is detectable (power 0.8), fixed-horizon and sequential, before anything starts."""
    from shiploop.cli.experiment_view import render_plan

    p = _client().request(
        "GET", _path(service, "/plan"), None, {"baseline": baseline, "units_per_second": units_per_second}
    )
    emit_json(p) if as_json else console.print(render_plan(p), highlight=False, soft_wrap=True)


@experiment_app.command()
def start(service: ServiceArg, wait: WaitOpt = False, as_json: JsonOpt = False) -> None:
    """Snapshot the code, start it beside stable and split units by the experiment block of its service.yaml."""
    c = _client()
    with console.status(f"starting the candidate of {service}..."):
        s = c.request("POST", _path(service), {})
    if wait:
        _watch(c, service, as_json)
    if as_json:
        emit_json(s)
        return
    console.print(
        f"experiment #{s['id']}: {service}@{s['variants'][1]['version']} against {s['variants'][0]['version']}, "
        f"{s['state']}; follow it with: shiploop experiment status {service}",
        soft_wrap=True,
        highlight=False,
    )


@experiment_app.command()
def status(service: ServiceArg, wait: WaitOpt = False, as_json: JsonOpt = False) -> None:
    """Per variant: version, units, events, value; the lift and its always-valid interval; SRM; guardrails."""
    from shiploop.cli.experiment_view import render_status

    c = _client()
    if wait:
        _watch(c, service, as_json)
    s = c.request("GET", _path(service))
    emit_json(_public(s)) if as_json else console.print(render_status(s), highlight=False, soft_wrap=True)


@experiment_app.command()
def stop(
    service: ServiceArg,
    ship: Annotated[bool, typer.Option("--ship", help="promote the candidate")] = False,
    discard: Annotated[bool, typer.Option("--discard", help="roll the candidate back")] = False,
    as_json: JsonOpt = False,
) -> None:
    """End the running experiment by hand: --ship promotes the candidate, --discard rolls it back."""
    from shiploop.cli.experiment_view import render_status

    if ship == discard:
        raise Invalid("say --ship or --discard", hint=f"shiploop experiment stop {service} --discard")
    s = _client().request("POST", _path(service, "/stop"), {"outcome": "ship" if ship else "discard"})
    emit_json(_public(s)) if as_json else console.print(render_status(s), highlight=False, soft_wrap=True)


@experiment_app.command()
def history(service: ServiceArg, as_json: JsonOpt = False) -> None:
    """Past experiments of SERVICE with their hypothesis and result."""
    from shiploop.cli.experiment_view import history_table

    rows = _client().request("GET", f"/v1/services/{segment(service)}/experiments")
    emit_json(rows) if as_json else console.print(history_table(rows))


@experiment_app.command()
def report(
    service: ServiceArg,
    html_file: Annotated[
        Path | None, typer.Option("--html", metavar="FILE", help="also write a report readable offline")
    ] = None,
) -> None:
    """The summary of the latest experiment; with --html FILE also a self-contained HTML report."""
    from shiploop.cli.experiment_view import render_html, render_status

    r = _client().request("GET", _path(service, "/report"))
    console.print(render_status(r), highlight=False, soft_wrap=True)
    if html_file is not None:
        html_file.write_text(render_html(r))
        console.print(f"report written to {html_file}", highlight=False)


# The fields the issue fixes for `status --json`, plus what the daemon adds after them.
_PUBLIC_FIRST = ("state", "hypothesis", "variants", "lift", "srm_p", "guardrails", "decision", "reason")


def _public(s: dict[str, Any]) -> dict[str, Any]:
    out = {k: s[k] for k in _PUBLIC_FIRST if k in s}
    out["variants"] = [{k: v[k] for k in ("version", "track", "units", "events", "value")} for v in s["variants"]]
    out["lift"] = {k: s["lift"][k] for k in ("absolute", "relative", "interval")}
    out.update({k: v for k, v in s.items() if k not in out})
    out["lift_details"] = s["lift"]
    return out


def _watch(c: DaemonClient, service: str, as_json: bool) -> None:
    from shiploop.cli.experiment_view import EXIT_CODES, render_status

    try:
        s = c.request("GET", _path(service))
        while s["state"] not in EXIT_CODES:
            time.sleep(1)
            s = c.request("GET", _path(service))
    except KeyboardInterrupt:
        err.print(
            f"stopped watching; the experiment of {service} goes on. Follow it with: shiploop experiment status "
            f"{service} --wait (or end it: shiploop experiment stop {service} --discard)",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(130) from None
    emit_json(_public(s)) if as_json else console.print(render_status(s), highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_CODES[s["state"]])
