"""The alerting rules `shiploop alerts export` prints: what they watch, and runbooks whose
every command is one the CLI accepts. promtool's verdict is tests/integration/test_exports.py's;
evaluation on a real Prometheus is tests/e2e/test_prometheus.py's."""

from __future__ import annotations

import re
import shlex
from typing import Any

import pytest
import typer
import yaml

from shiploop.cli.main import ROLLOUT_ACTIONS, app, err
from shiploop.cli.usage import run_app
from shiploop.telemetry.alerts import alert_rules

# What Prometheus fills in from an alert's labels, as a real alert would carry them.
LABELS = {"service": "web", "version": "3f9c2a1b7d04", "candidate": "3f9c2a1b7d04", "rollout": "7", "project": "demo"}
COMMAND = re.compile(r"`(shiploop [^`]+)`")


@pytest.fixture(scope="module")
def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(alert_rules())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def fill(text: str) -> str:
    return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: LABELS[m.group(1)], text)


def runbook_commands(rules: list[dict[str, Any]]) -> list[list[str]]:
    return [shlex.split(fill(c))[1:] for rule in rules for c in COMMAND.findall(rule["annotations"]["runbook"])]


def test_the_rules_watch_what_the_issue_names(rules):
    by_name = {r["alert"]: r for r in rules}
    assert set(by_name) >= {
        "ShiploopVersionErrorsAboveStable",
        "ShiploopVersionSlowerThanStable",
        "ShiploopRolloutHeld",
        "ShiploopRolloutRolledBack",
        "ShiploopGatewayDown",
        "ShiploopEnvoyRejectedRoutes",
        "ShiploopReplicaCrashLooping",
    }
    errors = by_name["ShiploopVersionErrorsAboveStable"]["expr"]
    assert 'envoy_response_code_class="5"' in errors and 'track="stable"' in errors and "group_left" in errors
    assert "histogram_quantile(0.95" in by_name["ShiploopVersionSlowerThanStable"]["expr"]
    assert 'state="held"' in by_name["ShiploopRolloutHeld"]["expr"]
    assert 'state="rolled_back"' in by_name["ShiploopRolloutRolledBack"]["expr"]
    assert 'job="shiploop_envoy"' in by_name["ShiploopGatewayDown"]["expr"]
    assert "shiploop_envoy_rejections_total" in by_name["ShiploopEnvoyRejectedRoutes"]["expr"]
    assert "shiploop_replica_restarts_total" in by_name["ShiploopReplicaCrashLooping"]["expr"]
    for rule in rules:
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert {"summary", "description", "runbook"} <= set(rule["annotations"]), rule["alert"]
        assert COMMAND.search(rule["annotations"]["runbook"]), f"{rule['alert']}: its runbook names no command"
        # Only labels the alert's series carry: anything else renders empty.
        for label in re.findall(r"\$labels\.(\w+)", str(rule["annotations"])):
            assert label in LABELS or label in ("track", "instance"), (rule["alert"], label)


def test_every_command_a_runbook_names_parses_with_the_cli(rules):
    group = typer.main.get_command(app)
    commands = runbook_commands(rules)
    assert {args[0] for args in commands} >= {"rollout", "logs", "status", "events", "history", "rollback", "up"}
    for args in commands:
        # Parsed to the end, options and arguments included: click refuses what the command does not take.
        ctx = group.make_context("shiploop", list(args))
        with ctx:
            name, command, rest = group.resolve_command(ctx, list(args))
            assert command is not None, args
            sub = command.make_context(name or "", rest, parent=ctx)
            if name == "rollout" and sub.params["second"] is not None:
                assert sub.params["first"] in ROLLOUT_ACTIONS, args


def test_help_of_every_runbook_command(capsys, rules):
    for args in {tuple(a) for a in runbook_commands(rules)}:
        with pytest.raises(SystemExit) as info:
            run_app(app, err, [*args, "--help"])
        out = capsys.readouterr().out
        assert info.value.code in (0, None) and out.startswith(f"Usage: shiploop {args[0]}"), (args, out)


def test_alerts_export_to_a_place_it_cannot_write_is_one_line_exit_2(capsys, tmp_path):
    with pytest.raises(SystemExit) as info:
        run_app(app, err, ["alerts", "export", "--out", str(tmp_path / "missing" / "alerts.yml")])
    stderr = capsys.readouterr().err
    assert info.value.code == 2 and "Traceback" not in stderr
    assert stderr.startswith("error: cannot write the rules to") and len(stderr.strip().splitlines()) == 1, stderr
