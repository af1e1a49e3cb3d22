"""Every manifest `shiploop render` writes for the shop, checked by checkov (Pod Security "restricted"
and common best practices). One checkov run for both targets: it takes ~15 s to import."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from shiploop.k8s.render import render, write
from shiploop.spec import load_project

ROOT = Path(__file__).resolve().parents[2]
# checkov pins packaging<24, which the test tools need newer: `make test` gives it its own venv.
CHECKOV = next(
    (c for c in (str(ROOT / ".venv-checkov" / "bin" / "checkov"), shutil.which("checkov")) if c and os.path.exists(c)),
    None,
)

SKIPPED = {
    # Images are tagged by content (the version id and a hash of the Dockerfile and build args), so a tag
    # names one build; the registry's digest exists only after the push, which render does not need.
    "CKV_K8S_43": "Image should use digest",
    # The controller is the one pod that talks to the API server: it needs its token, limited by its Role.
    # Every other pod has automountServiceAccountToken: false.
    "CKV_K8S_38": "Ensure that Service Account Tokens are only mounted where necessary",
}


@pytest.mark.slow  # over 2.5 s alone: with `make test`, not `make test-fast`
@pytest.mark.skipif(CHECKOV is None, reason="needs checkov (make test installs it into .venv-checkov)")
def test_checkov_finds_nothing_unexplained_in_the_rendered_shop(tmp_path: Path):
    project = load_project(ROOT / "examples" / "shop")
    for profile in ("prod",):
        for target in ("kubernetes", "gateway-api"):
            write(render(project, profile, target).objects, tmp_path / f"{target}-{profile}")
    assert CHECKOV is not None
    done = subprocess.run(
        [CHECKOV, "-d", str(tmp_path), "--framework", "kubernetes", "--skip-download", "--quiet", "-o", "json",
         "--skip-check", ",".join(SKIPPED)],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    reports = json.loads(done.stdout)
    report = reports[0] if isinstance(reports, list) else reports
    failed = [f"{c['check_id']} {c['check_name']}: {c['resource']}" for c in report["results"]["failed_checks"]]
    assert not failed, "\n".join(failed)
    summary = report["summary"]
    assert summary["passed"] > 200 and summary["parsing_errors"] == 0, summary
    skipped = {c["check_id"] for c in report["results"].get("skipped_checks", [])}
    assert skipped <= set(SKIPPED), skipped
