"""A hypothesis tested on the shop: does the one-field signup form raise signups per visitor?

    .venv/bin/python examples/experiment.py [--keep]

The shop (a temporary copy of examples/shop) runs with the classic form as stable.
The candidate changes web/behaviour.json to the one-field form; `shiploop experiment
start web` puts it beside stable and Envoy splits visitors by a cookie it sets.
Simulated visitors (each its own browser: its own cookie, three visits) read which
form they got and sign up with a known probability per design, so the true lift is
known. The app reports a signup with a `Shiploop-Event: signup` response header; no
SDK. The experiment decides on its own; the demo prints the report and checks that
its interval covers the true lift.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from demo import cli_path, copy_shop, note, section  # noqa: E402  (examples/demo.py, beside this file)

from shiploop.procs import free_port  # noqa: E402

TRUE_RATE = {"classic": 0.20, "one-field": 0.35}  # the chance a visitor signs up, per design
TRUE_LIFT = TRUE_RATE["one-field"] - TRUE_RATE["classic"]
VISITS = 3
WORKERS = 16
DEADLINE_S = 100  # the experiment must decide by then (it takes ~600 visitors, ~20 s here)


class Visitors:
    """Simulated browsers, tallied by the design they saw: what the gateway served them."""

    def __init__(self, gateway: str, seed: int = 1) -> None:
        self.gateway = gateway
        self.lock = threading.Lock()
        self.units: Counter[str] = Counter()
        self.signups: Counter[str] = Counter()
        self.failed = 0
        self.switched = 0  # visitors who saw the other design on a later visit
        self.stop = threading.Event()
        self.rng = random.Random(seed)

    def _request(self, path: str, cookie: str | None, form: dict[str, str] | None = None) -> tuple[str, str | None]:
        data = urllib.parse.urlencode(form).encode() if form else None
        req = urllib.request.Request(self.gateway + path, data=data)
        if cookie:
            req.add_header("Cookie", f"shiploop_uid={cookie}")
        with urllib.request.urlopen(req, timeout=10) as r:
            body = r.read().decode()
            set_cookie = r.headers.get("Set-Cookie") or ""
        if "Shiploop-Event" in str(r.headers):
            raise RuntimeError("the gateway let the event header through")
        new = set_cookie.split(";", 1)[0].split("=", 1)[1] if set_cookie.startswith("shiploop_uid=") else None
        return body, new

    def one(self, n: int) -> None:
        with self.lock:
            signs_up = self.rng.random()  # compared with the design's rate once the form is seen
            converts_on = self.rng.randrange(VISITS)
        cookie: str | None = None
        design = ""
        for visit in range(VISITS):
            page, new = self._request("/", cookie)
            cookie = cookie or new
            seen = "one-field" if 'data-design="one-field"' in page else "classic"
            if design and seen != design:
                # Only once the experiment has ended: the winner is stable and everyone sees it.
                with self.lock:
                    self.switched += 1
                return
            if not design:
                design = seen
                with self.lock:
                    self.units[design] += 1
            if visit == converts_on and signs_up < TRUE_RATE[design]:
                self._request("/signup", cookie, {"email": f"visitor{n}@example.com"})
                with self.lock:
                    self.signups[design] += 1

    def run(self, start: int) -> None:
        n = start
        while not self.stop.is_set():
            try:
                self.one(n)
            except (OSError, urllib.error.URLError) as e:
                with self.lock:
                    self.failed += 1
                if self.failed > 20:
                    raise RuntimeError(f"too many failed visits: {e}") from e
            n += WORKERS


def shiploop(project: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    print(f"$ shiploop {' '.join(args)}", flush=True)
    proc = subprocess.run([cli_path(), *args], cwd=project, capture_output=True, text=True, timeout=120)
    print(proc.stdout + proc.stderr, end="", flush=True)
    if check and proc.returncode != 0:
        raise SystemExit(f"experiment demo: `shiploop {' '.join(args)}` exited {proc.returncode}")
    return proc


def api_status(project: Path) -> dict[str, Any]:
    port = json.loads((project / ".shiploop" / "daemon.json").read_text())["api_port"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/services/web/experiment", timeout=10) as r:
        return dict(json.loads(r.read()))


def final_state_running(project: Path) -> bool:
    return api_status(project)["state"] == "running"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary project copy afterwards")
    args = parser.parse_args()
    started = time.monotonic()
    port = free_port()
    project = copy_shop(port)
    gateway = f"http://127.0.0.1:{port}"
    ok = False
    try:
        section("Start the shop", "web serves the classic signup form as stable.")
        shiploop(project, "up", "--detach", "--port", str(port))

        section(
            "The idea",
            """A one-field form should get more visitors to sign up. web/service.yaml says so in its
            experiment block: the hypothesis, visitors as the unit (a cookie), signups as the metric.""",
        )
        behaviour = project / "web" / "behaviour.json"
        behaviour.write_text(behaviour.read_text().replace('"classic"', '"one-field"'))
        # No traffic yet to measure: the plan takes the visitors the demo will send (about 20 new a second).
        shiploop(
            project, "experiment", "plan", "web", "--baseline", str(TRUE_RATE["classic"]), "--units-per-second", "20"
        )

        section("Start the experiment", "The candidate runs beside stable; Envoy gives each new visitor a cookie.")
        shiploop(project, "experiment", "start", "web")

        section(
            "Visitors arrive",
            f"""{WORKERS} browsers at a time, {VISITS} visits each; true signup rates
            {TRUE_RATE['classic']:.0%} (classic) and {TRUE_RATE['one-field']:.0%} (one-field): a true lift of
            {TRUE_LIFT:+.2f}.""",
        )
        visitors = Visitors(gateway)
        threads = [threading.Thread(target=visitors.run, args=(i,), daemon=True) for i in range(WORKERS)]
        for t in threads:
            t.start()
        status = api_status(project)
        deadline = time.monotonic() + DEADLINE_S
        while status["state"] == "running" and time.monotonic() < deadline:
            time.sleep(2)
            status = api_status(project)
            units = {v["arm"]: v["units"] for v in status["variants"]}
            note(f"units {units}, lift {status['lift']['absolute']}, interval {status['lift']['interval']}")
        visitors.stop.set()
        for t in threads:
            t.join(timeout=15)
        note(f"visitors by the design they saw: {dict(visitors.units)}; signups: {dict(visitors.signups)}")
        note(f"{visitors.switched} visitors saw the other design on a later visit (after the decision)")
        if visitors.switched and final_state_running(project):
            raise SystemExit("experiment demo: a visitor switched designs while the experiment ran")

        section("The answer", "The report, also written as an HTML file readable offline.")
        html = project / "experiment-report.html"
        shiploop(project, "experiment", "report", "web", "--html", str(html))
        final = api_status(project)
        lo, hi = final["lift"]["interval"]
        covers = lo is not None and hi is not None and lo <= TRUE_LIFT <= hi
        note(f"state {final['state']}: the 95% interval [{lo}, {hi}] covers the true lift {TRUE_LIFT:+.2f}: {covers}")
        shiploop(project, "experiment", "history", "web")
        ok = final["state"] == "shipped" and covers
        if not ok:
            print("experiment demo: FAILED: expected a shipped experiment whose interval covers the truth")
    finally:
        section("Shut down", "`shiploop down` stops every replica, Envoy and the control plane.")
        shiploop(project, "down", check=False)
        if ok and not args.keep:
            shutil.rmtree(project.parent, ignore_errors=True)
        else:
            print(f"project kept at {project}")
    print(f"\nexperiment demo {'passed' if ok else 'FAILED'} in {time.monotonic() - started:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
