"""What the live dashboard costs the daemon: its CPU with the page open against without, at 100 rps.

    .venv/bin/python -m bench.dashboard_cost [--quick] [--phase-s 30] [--rounds 3] [--no-browser]

A real project (the `shiploop init` starter, `hello`, 2 replicas per version,
a canary at 10% so the page draws two versions) runs under the daemon
(`python -m shiploop.daemon`); the load generator sends 100 rps through Envoy
the whole time. We read the daemon process's CPU time (user + system, from
/proc) over phases of equal length, interleaved so that drift hits all alike:
- off: nobody looks at the dashboard;
- poller: a client fetching what the services page fetches, at its rate
  (GET /v1/dashboard/overview every 3 s);
- browser: headless Chromium (Playwright, /usr/bin/chromium or
  SHIPLOOP_CHROMIUM) with the services page open, if a chromium is found.
The extra CPU of a phase is (its CPU - off's CPU) / off's CPU; the target is
under 5%. The browser's own CPU is not the daemon's and is not counted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

import httpx

from bench.common import cpu_seconds, machine, print_header, starter_daemon, table, write_results
from shiploop.loadgen import background_load

NAME = "dashboard_cost"
RPS = 100
PAGE_POLL_S = 3.0  # shiploop/daemon/static/app.js POLL_MS


def find_chromium() -> str | None:
    for candidate in (os.environ.get("SHIPLOOP_CHROMIUM"), "/usr/bin/chromium", "chromium", "chromium-browser"):
        if candidate and (path := shutil.which(candidate)):
            return path
    return None


@contextmanager
def poller(api: str) -> Iterator[None]:
    stop = threading.Event()

    def run() -> None:
        with httpx.Client(base_url=api, timeout=5) as c:
            while not stop.is_set():
                c.get("/v1/dashboard/overview").raise_for_status()
                stop.wait(PAGE_POLL_S)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join(10)


@contextmanager
def browser_page(api: str, chromium: str) -> Iterator[None]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, headless=True)
        try:
            page = b.new_page(viewport={"width": 1200, "height": 900})
            page.goto(f"{api}/")
            page.wait_for_selector("[data-testid=version-row]")
            yield
        finally:
            b.close()


def measure(pid: int, seconds: float, during: Callable[[], AbstractContextManager[None]]) -> float:
    with during():
        time.sleep(1.0)  # let the page or poller settle in before counting
        start = cpu_seconds(pid)
        time.sleep(seconds)
        end = cpu_seconds(pid)
    if start is None or end is None:
        raise RuntimeError("the daemon exited during the measurement")
    return end - start


def run(phase_s: float, rounds: int, use_browser: bool, work: Path) -> dict[str, Any]:
    with starter_daemon(work) as daemon, httpx.Client(
        base_url=daemon.api, headers={"Authorization": f"Bearer {daemon.token}"}, timeout=60
    ) as api_http:
        api = daemon.api
        spec = daemon.root / "hello" / "service.yaml"
        spec.write_text(spec.read_text().replace("GREETING: hello", "GREETING: howdy"))
        api_http.post("/v1/services/hello/deploy", json={"weight": 10}).raise_for_status()
        chromium = find_chromium() if use_browser else None
        phases: dict[str, Callable[[], AbstractContextManager[None]]] = {
            "off": nullcontext,
            "poller": lambda: poller(api),
        }
        if chromium:
            phases["browser"] = lambda: browser_page(api, chromium)
        cpu: dict[str, list[float]] = {k: [] for k in phases}
        with background_load(f"{daemon.gateway}/hello/", rps=RPS) as load:
            load.wait_until(lambda r: r.total >= RPS, 10)
            for i in range(rounds):
                for name, during in phases.items():
                    used = measure(daemon.proc.pid, phase_s, during)
                    cpu[name].append(used)
                    print(f"  round {i + 1}/{rounds} {name:8s} daemon CPU {used / phase_s * 100:5.1f}%", flush=True)
            report = load.report()
        off = sum(cpu["off"])
        return {
            "phase_s": phase_s,
            "rounds": rounds,
            "rps": RPS,
            "load": {"sent": report.total, "status_counts": {str(k): v for k, v in report.status_counts.items()}},
            "chromium": chromium,
            "cpu_s": cpu,
            "daemon_cpu_percent": {k: round(sum(v) / (phase_s * rounds) * 100, 2) for k, v in cpu.items()},
            "extra_vs_off": {k: round((sum(v) - off) / off, 4) for k, v in cpu.items() if k != "off"},
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds of 10 s phases")
    parser.add_argument("--phase-s", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-browser", action="store_true", help="only the poller, no Chromium")
    args = parser.parse_args()
    phase_s, rounds = (10.0, 2) if args.quick else (args.phase_s, args.rounds)
    info = machine()
    print_header(
        "dashboard cost",
        f"the daemon's CPU with the dashboard's services page open vs not, under {RPS} rps through Envoy",
        f"{rounds} rounds of interleaved {phase_s:g} s phases (off, poller every {PAGE_POLL_S:g} s, headless "
        "Chromium); CPU time of the daemon process from /proc",
        info,
    )
    with tempfile.TemporaryDirectory(prefix="shiploop-bench-") as tmp:
        result = run(phase_s, rounds, not args.no_browser, Path(tmp))
    rows = [["off", result["daemon_cpu_percent"]["off"], "-"]]
    for k, extra in result["extra_vs_off"].items():
        rows.append([k, result["daemon_cpu_percent"][k], f"{extra * 100:+.1f}%"])
    print()
    print(table(["page", "daemon CPU %", "extra vs off"], rows))
    print(f"\ntarget: under +5% extra. Chromium: {result['chromium'] or 'not found, browser phase skipped'}")
    write_results(NAME, {"machine": info, "result": result})


if __name__ == "__main__":
    main()
