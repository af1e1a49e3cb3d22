"""How many requests per second the load generator sustains from one process.

    .venv/bin/python -m bench.loadgen_capacity [--rps 2000,4000,8000,12000] [--seconds 5]

One bench/fast_app.py replica (asyncio, fixed body) on this machine; the load
generator sends to it directly at each target rate, open loop. A rate is
sustained when the achieved rate is within 2% of the target, every request got
a 200, and fewer than 1% of requests started late (more than 10 ms after their
scheduled time). The app and the generator share the machine's cores, so this
is a floor for the generator alone. It backs the "about 8,000 rps" in
docs/decisions.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

from bench.common import cpu_seconds, machine, print_header, start_fast_app, table, write_results
from shiploop.loadgen import LoadSpec, run_load

NAME = "loadgen_capacity"


async def one_rate(url: str, rps: float, seconds: float, app_pid: int) -> dict[str, float | int | bool]:
    app_cpu, own_cpu = cpu_seconds(app_pid) or 0.0, time.process_time()
    report = await run_load(LoadSpec(url, rps, seconds, max_connections=256))
    late_share = report.late_starts / report.total if report.total else 1.0
    sustained = report.achieved_rps >= 0.98 * rps and report.ok == report.total and late_share < 0.01
    return {
        "target_rps": rps,
        "achieved_rps": round(report.achieved_rps, 1),
        "ok": report.ok,
        "failed": report.failed,
        "late_share": round(late_share, 4),
        "p50_ms": round(report.latency.p50_s * 1000, 2),
        "p99_ms": round(report.latency.p99_s * 1000, 2),
        "loadgen_cpu_s": round(time.process_time() - own_cpu, 2),
        "app_cpu_s": round((cpu_seconds(app_pid) or 0.0) - app_cpu, 2),
        "sustained": sustained,
    }


async def amain(rates: list[float], seconds: float) -> list[dict[str, float | int | bool]]:
    with tempfile.TemporaryDirectory(prefix="shiploop-loadgen-") as tmp:
        app = start_fast_app("v1", Path(tmp))
        try:
            url = f"{app.url}/x"
            await run_load(LoadSpec(url, 1000, 1.0))  # warm-up, not recorded
            return [await one_rate(url, rps, seconds, app.proc.pid) for rps in rates]
        finally:
            app.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rps", default="2000,4000,8000,12000")
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    rates = [float(r) for r in args.rps.split(",")]
    info = machine()
    print_header(
        "load generator capacity",
        "the highest open-loop rate one shiploop loadgen process sustains",
        f"direct to one fast_app replica, {args.seconds:g} s per rate; sustained = within 2% of target, "
        "all 200, <1% late starts",
        info,
    )
    rows = asyncio.run(amain(rates, args.seconds))
    print(table(list(rows[0]), [list(r.values()) for r in rows]))
    best = max((r["target_rps"] for r in rows if r["sustained"]), default=0)
    print(f"\nsustained up to {best:g} rps on {os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.2f} now)")
    path = write_results(NAME, {"machine": info, "seconds": args.seconds, "rates": rows})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
