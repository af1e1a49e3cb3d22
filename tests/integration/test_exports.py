"""`shiploop dashboards export` and `shiploop alerts export` through the real CLI, checked by
promtool (Debian's prometheus package), no daemon needed."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from shiploop.telemetry.alerts import alert_rules
from tests.daemon_helpers import Project, create_project
from tests.prometheus_exports import interpolate


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool not installed (Debian: apt-get install prometheus; make test does it as root)")
    return found


def check_rules(tool: str, path: Path) -> str:
    check = subprocess.run([tool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "WARNING" not in check.stdout + check.stderr, check.stdout + check.stderr
    return check.stdout


@pytest.fixture
def project(tmp_path: Path) -> Project:
    # Nothing here starts a daemon: no `down` to wait for at the end.
    project = create_project(tmp_path / "proj")
    project.add_service("echo", "/echo/")
    project.add_service("shop", "/shop/")
    return project


def test_promtool_accepts_the_exported_alert_rules(project: Project):
    tool = promtool()
    out = project.root / "alerts.yml"
    said = project.cli("alerts", "export", "--out", str(out)).stdout
    assert f"promtool check rules {out}" in said
    rules = [r for g in yaml.safe_load(out.read_text())["groups"] for r in g["rules"]]
    assert f"SUCCESS: {len(rules)} rules found" in check_rules(tool, out)
    assert out.read_text() == alert_rules()  # what `alerts export` prints without --out


@pytest.mark.slow  # over 2.5 s alone: with `make test`, not `make test-fast`
def test_dashboards_export_writes_an_overview_and_one_per_service_whose_queries_parse(project: Project):
    tool = promtool()
    said = project.cli("dashboards", "export").stdout
    where = project.root / ".shiploop" / "dashboards"
    names = ["overview.json", "service-echo.json", "service-shop.json"]
    assert sorted(p.name for p in where.iterdir()) == names
    assert [line for line in said.splitlines() if line.endswith(".json")] == [str(where / n) for n in names]
    assert "Import" in said and "shiploop prometheus-config" in said
    elsewhere = project.root / "grafana"
    project.cli("dashboards", "export", "--out", str(elsewhere))
    assert (elsewhere / "service-echo.json").read_text() == (where / "service-echo.json").read_text()
    # Every query, variables filled in as Grafana would, as PromQL promtool accepts.
    exprs = []
    for name in names:
        board = json.loads((where / name).read_text())
        exprs += [t["expr"] for p in board["panels"] if p["type"] != "row" for t in p["targets"]]
        exprs += [a["expr"] for a in board["annotations"]["list"]]
    rules = project.root / "queries.yml"
    rules.write_text(
        yaml.safe_dump(
            {
                "groups": [
                    {"name": "q", "rules": [{"record": f"q:{i}", "expr": interpolate(e)} for i, e in enumerate(exprs)]}
                ]
            }
        )
    )
    assert f"SUCCESS: {len(exprs)} rules found" in check_rules(tool, rules)
