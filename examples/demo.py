"""shiploop in two minutes: ship a canary of the shop's api, watch it, back it out, ship a good one.

    make demo        # or: .venv/bin/python examples/demo.py [--keep]

The demo copies examples/shop to a temporary directory (the repository stays
clean), starts it on a free port with the real `shiploop` CLI, and drives it the
way you would by hand. Between steps it sends traffic through the gateway with
shiploop's load generator and counts the responses per version, from the
`x-shiploop-version` header the gateway adds to every response.

Every step is a small function taking the Demo; add one to STEPS to extend it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from shiploop.loadgen import LoadReport, Result, run_load_sync
from shiploop.runtime.procs import free_port

SHOP = Path(__file__).resolve().parent / "shop"
VERSION_HEADER = "x-shiploop-version"
CLI_TIMEOUT_S = 60


class DemoFailed(Exception):
    """A step did not do what it should; the message says which and why."""


@dataclass
class Demo:
    project: Path  # the temporary copy of examples/shop
    port: int
    up: bool = False
    stable: dict[str, str] = field(default_factory=dict)  # service -> stable version id, from status
    candidate: str = ""  # the version the next promote should make stable

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.port}"


# -- output -------------------------------------------------------------------------------


def section(title: str, why: str) -> None:
    print(f"\n=== {title} ".ljust(78, "="))
    for line in why.strip().splitlines():
        print(f"  {line.strip()}")
    print(flush=True)


def note(text: str) -> None:
    print(f"  > {text}", flush=True)


# -- the CLI and the gateway ------------------------------------------------------------


def cli_path() -> str:
    beside = Path(sys.executable).parent / "shiploop"  # the venv's own script
    found = str(beside) if beside.exists() else shutil.which("shiploop")
    if not found:
        raise DemoFailed("cannot find the shiploop command; run `make demo` so the venv is built")
    return found


def shiploop(demo: Demo, *args: str, capture: bool = False, echo: bool = True) -> str:
    """Run `shiploop ARGS` in the project copy; its output goes to our stdout unless captured."""
    if echo:
        print(f"$ shiploop {' '.join(args)}", flush=True)
    try:
        done = subprocess.run(
            [cli_path(), *args],
            cwd=demo.project,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.STDOUT if capture else None,
            text=True,
            timeout=CLI_TIMEOUT_S,
            env={**os.environ, "COLUMNS": "100"},
        )
    except subprocess.TimeoutExpired:
        raise DemoFailed(f"`shiploop {' '.join(args)}` did not finish within {CLI_TIMEOUT_S}s") from None
    if done.returncode != 0:
        detail = f":\n{done.stdout}" if capture and done.stdout else ""
        raise DemoFailed(f"`shiploop {' '.join(args)}` exited with {done.returncode}{detail}")
    return done.stdout or ""


def status(demo: Demo) -> dict:
    data = json.loads(shiploop(demo, "status", "--json", capture=True, echo=False))
    demo.stable = {svc["name"]: v["id"] for svc in data["services"] for v in svc["versions"] if v["track"] == "stable"}
    return data


def edit_behaviour(demo: Demo, service: str, **changes: object) -> None:
    path = demo.project / service / "behaviour.json"
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data, indent=2) + "\n")
    note(f"edited {service}/behaviour.json: {', '.join(f'{k}={v}' for k, v in changes.items())}")


def send_traffic(demo: Demo, path: str, rps: float = 100, seconds: float = 3) -> dict[str, Counter[str]]:
    """Open-loop load on the gateway; prints and returns {version: Counter(ok=.., failed=..)}."""
    per_version: dict[str, Counter[str]] = {}

    def tally(result: Result) -> None:
        version = result.headers.get(VERSION_HEADER, "(no header)")
        per_version.setdefault(version, Counter())["ok" if result.ok else "failed"] += 1

    url = demo.gateway + path
    note(f"sending {rps:g} requests/s to {url} for {seconds:g}s")
    report: LoadReport = run_load_sync(url, rps, seconds, on_result=tally, capture_headers=[VERSION_HEADER])
    total = max(1, report.total)
    print(f"    {'version':<22}{'requests':>10}{'share':>8}{'failed':>8}")
    for version, counts in sorted(per_version.items()):
        n = counts["ok"] + counts["failed"]
        print(f"    {version:<22}{n:>10}{n / total:>8.0%}{counts['failed']:>8}")
    print(
        f"    p50 {report.latency.p50_s * 1000:.1f} ms, p99 {report.latency.p99_s * 1000:.1f} ms, "
        f"{report.achieved_rps:.0f} req/s achieved",
        flush=True,
    )
    return per_version


def share_of(per_version: dict[str, Counter[str]], service: str, version: str) -> float:
    total = sum(sum(c.values()) for c in per_version.values())
    return sum(per_version.get(f"{service}@{version}", Counter()).values()) / max(1, total)


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise DemoFailed(message)


# -- the steps ------------------------------------------------------------------------------


def start(demo: Demo) -> None:
    section(
        "1. Start the shop",
        """shiploop snapshots each service directory into a content-addressed version,
        starts its replicas as local processes, and puts a real Envoy gateway in front.
        web serves /, api serves /api/ (two replicas).""",
    )
    demo.up = True  # from here on, `down` must run even if `up` fails halfway
    shiploop(demo, "up", "--detach", "--port", str(demo.port))
    status(demo)
    expect(set(demo.stable) == {"web", "api"}, f"expected stable web and api, got {demo.stable}")


def sign_up(demo: Demo) -> None:
    section(
        "2. Sign up through the gateway",
        """The browser posts the form to web; web calls api at /api/signups through the
        same gateway, so whatever routing api has applies to web's calls too.""",
    )
    form = urllib.parse.urlencode({"email": "ana@example.com"}).encode()
    with urllib.request.urlopen(f"{demo.gateway}/signup", data=form, timeout=10) as response:
        page = response.read().decode()
        served_by = response.headers.get(VERSION_HEADER)
    thanks = next((line for line in page.splitlines() if "Thank you" in line), "")
    expect(bool(thanks), f"no thank-you in the signup page:\n{page}")
    note(f"POST /signup -> {response.status}, served by {served_by}")
    note(" ".join(re.sub(r"<[^>]+>", " ", thanks).split()))


def baseline(demo: Demo) -> None:
    section(
        "3. Traffic on the stable version",
        """Before changing anything: every checkout is answered by api's one version.""",
    )
    seen = send_traffic(demo, "/api/checkout")
    expect(share_of(seen, "api", demo.stable["api"]) == 1.0, "not all traffic went to the stable api")


def canary_with_bug(demo: Demo) -> None:
    section(
        "4. Ship a version with a bug, as a 20% canary",
        """We make 30% of checkouts fail in the copy's api/behaviour.json. The file is part
        of the service directory, so its content hash changes: `deploy` builds a new
        version and starts it beside stable, and the gateway sends it 20% of requests.""",
    )
    edit_behaviour(demo, "api", checkout_error_rate=0.3)
    stable = demo.stable["api"]
    canary = deploy(demo, "api", 20)
    seen = send_traffic(demo, "/api/checkout")
    expect(0.1 < share_of(seen, "api", canary) < 0.3, "the canary did not get about 20% of the traffic")
    failed = seen.get(f"api@{canary}", Counter())["failed"]
    expect(failed > 0, "the buggy canary had no failures")
    expect(seen.get(f"api@{stable}", Counter())["failed"] == 0, "stable failed too")
    note(f"only the canary fails ({failed} checkouts): stable's customers never saw the bug")


def roll_back(demo: Demo) -> None:
    section(
        "5. Roll the canary back",
        """All traffic returns to stable and the canary's replicas stop. (Soon
        `shiploop rollout` makes this call by itself, from the guardrails in
        api/service.yaml.)""",
    )
    shiploop(demo, "rollback", "api")
    seen = send_traffic(demo, "/api/checkout", seconds=1)
    expect(share_of(seen, "api", demo.stable["api"]) == 1.0, "traffic still reaches the canary after rollback")


def canary_good(demo: Demo) -> None:
    section(
        "6. Ship the fix, as a 20% canary",
        """The fix undoes the bug and lowers the free-shipping threshold from 50 to 40.""",
    )
    edit_behaviour(demo, "api", checkout_error_rate=0.0, free_shipping_over=40)
    canary = deploy(demo, "api", 20)
    seen = send_traffic(demo, "/api/checkout")
    expect(0.1 < share_of(seen, "api", canary) < 0.3, "the canary did not get about 20% of the traffic")
    expect(all(c["failed"] == 0 for c in seen.values()), "the fixed canary still fails")
    demo.candidate = canary


def promote(demo: Demo) -> None:
    section(
        "7. Promote it",
        """The canary becomes stable and takes all traffic; the old version stops once it
        has drained.""",
    )
    candidate = demo.candidate
    shiploop(demo, "promote", "api")
    shiploop(demo, "status")
    status(demo)
    expect(demo.stable["api"] == candidate, f"api stable is {demo.stable['api']}, expected {candidate}")
    seen = send_traffic(demo, "/api/checkout", seconds=1)
    expect(share_of(seen, "api", candidate) == 1.0, "not all traffic went to the promoted version")


def deploy(demo: Demo, service: str, weight: int) -> str:
    """`shiploop deploy`, then `shiploop status` to show the split; returns the canary's version."""
    result = json.loads(shiploop(demo, "deploy", service, "--weight", str(weight), "--json", capture=True))
    note(f"{service}@{result['version']} is canary at {result['weight']}%")
    shiploop(demo, "status")
    return str(result["version"])


STEPS: list[Callable[[Demo], None]] = [start, sign_up, baseline, canary_with_bug, roll_back, canary_good, promote]


# -- set-up and tear-down ---------------------------------------------------------------------


def copy_shop(port: int) -> Path:
    """examples/shop in a temporary directory, with the gateway port set to `port`."""
    project = Path(tempfile.mkdtemp(prefix="shiploop-demo-")) / "shop"
    shutil.copytree(SHOP, project, ignore=shutil.ignore_patterns(".shiploop", "__pycache__"))
    for name in ("shiploop.yaml", "web/service.yaml"):  # web reaches api through the gateway's port
        path = project / name
        path.write_text(path.read_text().replace("8080", str(port)))
    return project


def stop(demo: Demo) -> bool:
    section("Shut down", "`shiploop down` stops every replica, Envoy and the control plane.")
    try:
        shiploop(demo, "down")
        return True
    except DemoFailed as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary project copy afterwards")
    args = parser.parse_args()
    started = time.monotonic()
    demo = Demo(project=Path(), port=free_port())
    demo.project = copy_shop(demo.port)
    print(f"shop copied to {demo.project}; gateway on {demo.gateway}")
    ok, interrupted = False, False
    try:
        for step in STEPS:
            step(demo)
        ok = True
    except DemoFailed as exc:
        print(f"\ndemo: FAILED: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print("\ndemo: interrupted", file=sys.stderr)
        interrupted = True
    finally:
        down_ok = stop(demo) if demo.up else True
    ok = ok and down_ok
    if ok and not args.keep:
        shutil.rmtree(demo.project.parent, ignore_errors=True)
    else:
        print(f"project copy and logs kept in {demo.project} (see .shiploop/logs)")
    outcome = "finished" if ok else "interrupted" if interrupted else "FAILED"
    print(f"\ndemo {outcome} in {time.monotonic() - started:.0f}s")
    return 0 if ok else 130 if interrupted else 1


if __name__ == "__main__":
    sys.exit(main())
