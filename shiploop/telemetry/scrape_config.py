"""The Prometheus configuration for a project: three scrape jobs fed by the daemon's file_sd files.

The same text serves an existing Prometheus (`shiploop prometheus-config`) and
the one `shiploop up --prometheus` starts. It names only files (absolute
paths), never ports, so it stays right across daemon restarts: the daemon
rewrites the files (telemetry.targets) and Prometheus follows them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from shiploop.telemetry.targets import targets_dir

JOB_DAEMON = "shiploop"
JOB_ENVOY = "shiploop_envoy"
JOB_REPLICAS = "shiploop_replicas"
SCRAPE_INTERVAL_S = 5


def scrape_jobs(state_dir: Path) -> list[dict[str, Any]]:
    files = targets_dir(state_dir.resolve())

    def job(name: str, file: str) -> dict[str, Any]:
        return {
            "job_name": name,
            "metrics_path": "/metrics",
            "file_sd_configs": [{"files": [str(files / file)], "refresh_interval": "5s"}],
        }

    return [job(JOB_DAEMON, "daemon.json"), job(JOB_ENVOY, "envoy.json"), job(JOB_REPLICAS, "replicas.json")]


def prometheus_config(
    state_dir: Path, project: str, interval_s: int = SCRAPE_INTERVAL_S, rule_files: tuple[Path, ...] = ()
) -> str:
    body: dict[str, Any] = {
        "global": {"scrape_interval": f"{interval_s}s", "evaluation_interval": f"{interval_s}s"},
    }
    if rule_files:
        body["rule_files"] = [str(f) for f in rule_files]
    body["scrape_configs"] = scrape_jobs(state_dir)
    header = (
        f"# Prometheus scrape configuration for the shiploop project '{project}' (shiploop prometheus-config).\n"
        "# Targets come from file_sd files the shiploop daemon rewrites as replicas come and go;\n"
        "# to add them to an existing Prometheus, copy the scrape_configs below into its configuration.\n"
        "# The files are in the project's private .shiploop directory: run Prometheus as the same user.\n"
    )
    return header + yaml.safe_dump(body, sort_keys=False)
