"""shiploop in two minutes: the shop under load, a buggy api rolled back on its own, a good one promoted.

    make demo        # or: .venv/bin/python examples/demo.py [--keep]

The demo copies examples/shop to a temporary directory (the repository stays
clean), starts it on a free port with the real `shiploop` CLI, and drives it the
way you would by hand. From step 3 on, shiploop's open-loop load generator plays
the shop's customers in the background: checkouts on the api and page views on
web, through the gateway. Every response carries the `x-shiploop-version` header
the gateway adds, so the demo counts, per version, what customers actually got.

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
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shiploop.loadgen import LoadGenerator, LoadReport, Result
from shiploop.procs import free_port

SHOP = Path(__file__).resolve().parent / "shop"
VERSION_HEADER = "x-shiploop-version"
CLI_TIMEOUT_S = 60
ROLLOUT_TIMEOUT_S = 240  # a rollout that neither ends nor holds by then is a failure of the demo
CHECKOUT_RPS = 100  # api/service.yaml's min_samples is sized for this rate
PAGE_RPS = 20
BUG_RATE = 0.08  # share of checkouts the buggy version fails
EXIT_PROMOTED, EXIT_ROLLED_BACK = 0, 3


class DemoFailed(Exception):
    """A step did not do what it should; the message says which and why."""


class Tally:
    """Responses per version, from the load generators' threads: {version: Counter(requests=, failed=)}."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, Counter[str]] = {}

    def add(self, result: Result) -> None:
        version = result.headers.get(VERSION_HEADER) or ("(no response)" if result.status == 0 else "(no header)")
        with self._lock:
            counts = self._counts.setdefault(version, Counter())
            counts["requests"] += 1
            counts["failed"] += 0 if result.ok else 1

    def snapshot(self) -> dict[str, Counter[str]]:
        with self._lock:
            return {version: Counter(counts) for version, counts in self._counts.items()}


@dataclass
class Demo:
    project: Path  # the temporary copy of examples/shop
    port: int
    up: bool = False
    stable: dict[str, str] = field(default_factory=dict)  # service -> stable version id, from status
    tally: Tally = field(default_factory=Tally)
    loads: list[LoadGenerator] = field(default_factory=list)
    first: str = ""  # api's stable version at start-up
    bad: str = ""  # the buggy api version, once built
    good: str = ""  # the fixed api version, once built

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


def counts_table(rows: dict[str, Counter[str]], labels: dict[str, str]) -> None:
    print(f"    {'version':<20}{'':<22}{'requests':>10}{'failed':>8}")
    for version, counts in sorted(rows.items()):
        label = labels.get(version, "")
        print(f"    {version:<20}{label:<22}{counts['requests']:>10}{counts['failed']:>8}")
    print(flush=True)


# -- the CLI and the gateway ------------------------------------------------------------


def cli_path() -> str:
    beside = Path(sys.executable).parent / "shiploop"  # the venv's own script
    found = str(beside) if beside.exists() else shutil.which("shiploop")
    if not found:
        raise DemoFailed("cannot find the shiploop command; run `make demo` so the venv is built")
    return found


def run_cli(
    demo: Demo, *args: str, capture: bool = False, echo: bool = True, timeout: float = CLI_TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    """Run `shiploop ARGS` in the project copy; its output goes to our stdout unless captured."""
    if echo:
        print(f"$ shiploop {' '.join(args)}", flush=True)
    try:
        return subprocess.run(
            [cli_path(), *args],
            cwd=demo.project,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.STDOUT if capture else None,
            text=True,
            timeout=timeout,
            env={**os.environ, "COLUMNS": "110"},
        )
    except subprocess.TimeoutExpired:
        raise DemoFailed(f"`shiploop {' '.join(args)}` did not finish within {timeout:g}s") from None


def shiploop(demo: Demo, *args: str, capture: bool = False, echo: bool = True) -> str:
    """`shiploop ARGS`, which must succeed; returns its output when captured."""
    done = run_cli(demo, *args, capture=capture, echo=echo)
    if done.returncode != 0:
        detail = f":\n{done.stdout}" if capture and done.stdout else ""
        raise DemoFailed(f"`shiploop {' '.join(args)}` exited with {done.returncode}{detail}")
    return done.stdout or ""


def status(demo: Demo) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(shiploop(demo, "status", "--json", capture=True, echo=False))
    demo.stable = {svc["name"]: v["id"] for svc in data["services"] for v in svc["versions"] if v["track"] == "stable"}
    return data


def rollout_status(demo: Demo, service: str) -> dict[str, Any]:
    return dict(json.loads(shiploop(demo, "rollout", "status", service, "--json", capture=True, echo=False)))


def edit_behaviour(demo: Demo, service: str, **changes: object) -> None:
    path = demo.project / service / "behaviour.json"
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data, indent=2) + "\n")
    note(f"edited {service}/behaviour.json: {', '.join(f'{k}={v}' for k, v in changes.items())}")


def roll_out(demo: Demo, service: str, expected_code: int) -> dict[str, Any]:
    """`shiploop rollout SERVICE --wait` with its live view; checks the exit code, returns the final rollout."""
    done = run_cli(demo, "rollout", service, "--wait", timeout=ROLLOUT_TIMEOUT_S)
    r = rollout_status(demo, service)
    if done.returncode != expected_code:
        raise DemoFailed(
            f"`shiploop rollout {service} --wait` exited with {done.returncode}, expected {expected_code}; "
            f"the rollout is {r['state']}: {r.get('reason')}\n"
            f"evidence: {json.dumps(r.get('last'), indent=2)}"
        )
    return r


def explain(r: dict[str, Any]) -> None:
    """The decisive reason of a finished rollout and the counts behind it, from `rollout status --json`."""
    last = r.get("last") or {}
    weight = r["steps"][r["step"]]
    print(
        f"\n  Decided at step {r['step'] + 1} of {len(r['steps'])} ({weight}% of traffic to the candidate), "
        f"{r['updated_at'] - r['started_at']:.0f}s after it started:"
    )
    print(f"    {r['reason']}")
    c, b = last.get("candidate"), last.get("baseline")
    if c and b:
        print(
            f"    since the rollout began: candidate {c['requests']} requests ({c['errors']} errors), "
            f"stable {b['requests']} requests ({b['errors']} errors)"
        )
    harmful = sorted((g for g in last.get("guardrails", []) if g.get("harmful")), key=lambda g: -g["log_lambda"])
    if r["state"] == "rolled_back" and last.get("rule") == "limit":
        print(
            "  In words: a limit is a hard ceiling on the candidate alone over its last 10 seconds, with no\n"
            "  statistics and no waiting for more data: it fired before the guardrails had enough requests to\n"
            "  judge. On so few requests it is partly luck which of the two catches a bug first."
        )
    elif r["state"] == "rolled_back" and harmful:
        g = harmful[0]
        cand, base = g["candidate"], g["baseline"]
        bad = "were slow on" if g["name"].startswith("latency") else "failed"
        print(
            f"  In words: the candidate {bad} {cand['events']} of {cand['trials']} requests, stable {bad} "
            f"{base['events']} of {base['trials']}.\n"
            f"  Even the low end of the confidence range for the difference ({g['lower_bound']:.2%}) is above\n"
            f"  the tolerance of {g['name']} ({g['tolerance']:.0%}): too many to be bad luck, so it was rolled back."
        )
    elif r["state"] == "promoted":
        print(
            "  In words: at each step the candidate served its minimum number of requests for its minimum time\n"
            "  and no guardrail showed harm, so traffic moved on; after the last step (100%) it became stable."
        )
    print(flush=True)


def checkout(demo: Demo) -> tuple[dict[str, Any], str]:
    with urllib.request.urlopen(f"{demo.gateway}/api/checkout", timeout=5) as response:
        return json.loads(response.read()), response.headers.get(VERSION_HEADER, "")


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
    demo.first = demo.stable["api"]


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


def start_load(demo: Demo) -> None:
    section(
        "3. Customers arrive: steady load for the rest of the demo",
        f"""From now on a load generator sends {CHECKOUT_RPS} checkouts/s to /api/checkout and
        {PAGE_RPS} page views/s to /, at a constant rate whatever the answers (open loop),
        and counts every response per version. shiploop judges each new version on
        this traffic.""",
    )
    for path, rps in (("/api/checkout", CHECKOUT_RPS), ("/", PAGE_RPS)):
        load = LoadGenerator(demo.gateway + path, rps, on_result=demo.tally.add, capture_headers=[VERSION_HEADER])
        demo.loads.append(load.start())
        note(f"{rps} requests/s to {demo.gateway}{path}")
    demo.loads[0].wait_until(lambda r: r.total >= 3 * CHECKOUT_RPS, timeout_s=15)
    seen = demo.tally.snapshot()
    note("after 3 seconds, every response comes from the stable versions and none failed:")
    counts_table(seen, labels(demo))
    expect(set(seen) == {f"{svc}@{v}" for svc, v in demo.stable.items()}, f"unexpected versions answered: {seen}")
    expect(all(c["failed"] == 0 for c in seen.values()), f"stable failed requests before any change: {seen}")


def ship_bug(demo: Demo) -> None:
    section(
        "4. Ship a version with a bug in checkout",
        f"""We make {BUG_RATE:.0%} of checkouts fail with a 500 in api/behaviour.json: the
        kind of bug a few unit tests miss. `shiploop rollout api --wait` builds the
        new version, starts it beside stable and moves traffic to it step by step
        (api/service.yaml: 10% -> 50% -> 100%). Every second it compares the candidate
        with stable, serving at the same time, on three guardrails; a guardrail shows
        harm when the candidate is worse by more than its tolerance with 95% confidence
        that holds however often it looks. Harm rolls the candidate back at once.
        Expected: rolled back (exit code 3).""",
    )
    stable = demo.stable["api"]
    edit_behaviour(demo, "api", checkout_error_rate=BUG_RATE)
    before = demo.tally.snapshot()
    r = roll_out(demo, "api", EXIT_ROLLED_BACK)
    after = demo.tally.snapshot()
    demo.bad = r["candidate"]
    expect(r["state"] == "rolled_back", f"the buggy rollout ended {r['state']}, expected rolled_back")
    rule = (r.get("last") or {}).get("rule")
    expect(rule in ("harm", "limit"), f"rolled back by rule {rule!r}, expected a guardrail or limit: {r['reason']}")
    explain(r)

    bad, kept = after.get(f"api@{demo.bad}", Counter()), after.get(f"api@{stable}", Counter())
    served = kept["requests"] - before.get(f"api@{stable}", Counter())["requests"]
    failed_on_stable = kept["failed"] - before.get(f"api@{stable}", Counter())["failed"]
    print("  Blast radius, as the customers saw it (the load generator's responses, from deploy to rollback):")
    print(f"    the buggy api@{demo.bad} answered {bad['requests']} checkouts and failed {bad['failed']} of them;")
    print(f"    meanwhile stable api@{stable} answered {served} checkouts and failed {failed_on_stable}.")
    if bad["requests"]:
        print(
            f"    Shipped to everyone for as long, the bug would have failed about "
            f"{BUG_RATE * (bad['requests'] + served):.0f} checkouts.",
            flush=True,
        )
    expect(bad["failed"] > 0, "the buggy version answered no failed checkouts: did it get any traffic?")
    expect(failed_on_stable == 0, f"stable failed {failed_on_stable} checkouts during the rollout")
    status(demo)
    expect(demo.stable["api"] == stable, f"api stable changed to {demo.stable['api']} after a rollback")
    expect(answered_only_by(demo, "api", stable), "traffic still reaches the buggy version after the rollback")
    note(f"all checkouts are back on api@{stable}")


def ship_fix(demo: Demo) -> None:
    section(
        "5. Ship the fix",
        """The fix removes the bug and, as the change we meant to make, lowers the
        free-shipping threshold from 50 to 40. Same command, same guardrails; the fix
        must pass each step's minimum time and number of requests showing no harm.
        Expected: promoted (exit code 0).""",
    )
    edit_behaviour(demo, "api", checkout_error_rate=0.0, free_shipping_over=40)
    r = roll_out(demo, "api", EXIT_PROMOTED)
    demo.good = r["candidate"]
    expect(r["state"] == "promoted", f"the fixed rollout ended {r['state']}, expected promoted")
    expect(demo.good != demo.bad, "the fix built the same version as the bug")
    explain(r)
    status(demo)
    expect(demo.stable["api"] == demo.good, f"api stable is {demo.stable['api']}, expected {demo.good}")
    order, served_by = checkout(demo)
    expect(order.get("free_shipping_over") == 40, f"checkout does not show the change: {order}")
    note(f"GET /api/checkout -> free_shipping_over={order['free_shipping_over']}, served by {served_by}")


def look_back(demo: Demo) -> None:
    section(
        "6. What happened, as shiploop recorded it",
        """Every rollout is kept with its outcome and the evidence that decided it.""",
    )
    shiploop(demo, "history", "api")
    shiploop(demo, "status")


def load_report(demo: Demo) -> None:
    section(
        "7. The customers' side",
        """The load stops. Per version, what the customers got over the whole demo: only the
        buggy version failed, and only while it was a canary.""",
    )
    reports = stop_load(demo)
    counts_table(demo.tally.snapshot(), labels(demo))
    for report in reports:
        lat = report.latency
        print(
            f"    {report.url}: {report.total} requests at {report.achieved_rps:.0f}/s, {report.failed} failed "
            f"({report.errors} without a response); latency p50 {lat.p50_s * 1000:.1f} ms, "
            f"p99 {lat.p99_s * 1000:.1f} ms"
        )
    failed_elsewhere = {
        v: c["failed"] for v, c in demo.tally.snapshot().items() if c["failed"] and v != f"api@{demo.bad}"
    }
    expect(not failed_elsewhere, f"requests failed outside the buggy version: {failed_elsewhere}")


def labels(demo: Demo) -> dict[str, str]:
    names = {f"web@{demo.stable.get('web')}": "stable", f"api@{demo.first}": "stable at start-up"}
    if demo.bad:
        names[f"api@{demo.bad}"] = "the buggy version"
    if demo.good:
        names[f"api@{demo.good}"] = "the fix"
    return names


def answered_only_by(demo: Demo, service: str, version: str, seconds: float = 2) -> bool:
    """Whether the next `seconds` of load on SERVICE all went to VERSION."""
    prefix = f"{service}@"
    before = demo.tally.snapshot()
    time.sleep(seconds)  # the load keeps running; look at what it got meanwhile
    after = demo.tally.snapshot()
    grown = {v for v, c in after.items() if v.startswith(prefix) and c != before.get(v)}
    return grown == {f"{service}@{version}"}


def stop_load(demo: Demo) -> list[LoadReport]:
    reports = []
    while demo.loads:
        load = demo.loads.pop(0)
        try:
            reports.append(load.stop())
        except (OSError, RuntimeError, TimeoutError) as exc:
            raise DemoFailed(f"the load generator on {load.spec.url} failed: {exc!r}") from exc
    return reports


STEPS: list[Callable[[Demo], None]] = [start, sign_up, start_load, ship_bug, ship_fix, look_back, load_report]


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
        try:
            stop_load(demo)
        except DemoFailed as exc:
            print(f"demo: {exc}", file=sys.stderr)
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
