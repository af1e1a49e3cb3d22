"""`shiploop dashboards export` and `shiploop alerts export`: Grafana dashboards and Prometheus
alerting rules for the Prometheus that scrapes a project (`shiploop prometheus-config`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from shiploop.errors import Invalid
from shiploop.paths import ProjectPaths, find_root, private_dir

dashboards_app = typer.Typer(help="Grafana dashboards for the project.", no_args_is_help=True)
alerts_app = typer.Typer(help="Prometheus alerting rules for shiploop.", no_args_is_help=True)


@dashboards_app.command("export")
def export_dashboards(
    out: Annotated[
        Path | None,
        typer.Option("--out", metavar="DIR", help="the directory to write them to (default: .shiploop/dashboards)"),
    ] = None,
) -> None:
    """Grafana dashboard JSON: an overview and one per service, for any Prometheus data source."""
    # Here, not at the top: the other commands must not pay for the spec models or the Grafana SDK.
    import json

    from shiploop.spec import load_project
    from shiploop.telemetry.grafana import build_dashboards
    from shiploop.telemetry.targets import write_atomically

    root = find_root(Path.cwd())
    project = load_project(root)
    if out is None:
        paths = ProjectPaths(root)
        private_dir(paths.state_dir)  # made here when the project never ran: private, as the daemon makes it
        out = paths.state_dir / "dashboards"
    dashboards = build_dashboards(project.name, list(project.services))
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, body in dashboards.items():
            write_atomically(out / name, json.dumps(body, indent=2) + "\n")
    except OSError as e:
        raise Invalid(
            f"cannot write the dashboards to {out}: {e.strerror}",
            hint="pick another: shiploop dashboards export --out DIR",
        ) from None
    for name in dashboards:
        print(out / name)
    print(
        f"wrote {len(dashboards)} Grafana dashboards to {out}; import each in Grafana (Dashboards > New > Import, "
        "upload the file) or point a dashboard provider at the directory, and pick the Prometheus that scrapes "
        "this project in the Prometheus menu at the top; its scrape config: shiploop prometheus-config"
    )


@alerts_app.command("export")
def export_alerts(
    out: Annotated[
        Path | None, typer.Option("--out", metavar="FILE", help="write them to FILE instead of stdout")
    ] = None,
) -> None:
    """Prometheus alerting rules: versions worse than stable, rollouts held or rolled back, the gateway down."""
    from shiploop.telemetry.alerts import alert_rules
    from shiploop.telemetry.targets import write_atomically

    text = alert_rules()
    if out is None:
        print(text, end="")
        return
    try:
        write_atomically(out, text)
    except OSError as e:
        raise Invalid(
            f"cannot write the rules to {out}: {e.strerror}", hint="pick another: shiploop alerts export --out FILE"
        ) from None
    print(
        f"wrote {out}; add it to rule_files in your Prometheus configuration; check it with: promtool check rules {out}"
    )
