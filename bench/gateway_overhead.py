"""What Envoy adds to a request: the same open-loop load direct to one replica and through the gateway.

    .venv/bin/python -m bench.gateway_overhead [--quick] [--rps 500,1000,2000] [--seconds 10]

One bench/fast_app.py replica (an asyncio server answering a fixed body, so the app
costs little), one Envoy started by shiploop's Gateway with a single route to it.
At each rate the load runs in four legs, direct / envoy / envoy / direct (ABBA),
each half the per-target time, so drift (CPU frequency, caches, a noisy
neighbour) falls on both paths alike. Latency counts from each request's
scheduled time (open loop: queueing is not hidden). The load generator, Envoy and
the app share the machine's cores, so at high rates the numbers include their
competition for CPU; the CPU columns show who used what.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import (
    cpu_seconds,
    machine,
    print_header,
    start_fast_app,
    summary_ms,
    table,
    write_results,
)
from shiploop.gateway.gateway import Gateway
from shiploop.gateway.model import Cluster, Endpoint, Match, Route, RoutingState, WeightedTarget
from shiploop.loadgen import LoadSpec, Result, run_load
from shiploop.procs import free_port

NAME = "gateway_overhead"


class Leg:
    """Everything one load run produced, kept raw so legs of one path can be merged."""

    def __init__(self) -> None:
        self.latency: list[float] = []
        self.service: list[float] = []
        self.total = 0
        self.ok = 0
        self.late = 0
        self.duration_s = 0.0
        self.cpu: dict[str, float] = {}

    def add(self, r: Result) -> None:
        self.total += 1
        if r.late:
            self.late += 1
        if r.error is None:
            self.latency.append(r.latency_s)
            if r.service_time_s is not None:
                self.service.append(r.service_time_s)
        if r.ok:
            self.ok += 1


async def run_leg(url: str, rps: float, seconds: float, pids: dict[str, int]) -> Leg:
    leg = Leg()
    before = {k: cpu_seconds(p) or 0.0 for k, p in pids.items()}
    self_before = time.process_time()
    report = await run_load(LoadSpec(url, rps, seconds, on_result=leg.add, timeout_s=5.0, max_connections=256))
    leg.cpu = {k: (cpu_seconds(p) or 0.0) - before[k] for k, p in pids.items()}
    leg.cpu["loadgen"] = time.process_time() - self_before
    leg.duration_s = report.duration_s
    return leg


def merge(legs: list[Leg]) -> dict[str, Any]:
    total = sum(leg.total for leg in legs)
    duration = sum(leg.duration_s for leg in legs)
    cpu_keys = legs[0].cpu.keys()
    return {
        "requests": total,
        "ok": sum(leg.ok for leg in legs),
        "failed": total - sum(leg.ok for leg in legs),
        "late_starts": sum(leg.late for leg in legs),
        "duration_s": duration,
        "achieved_rps": total / duration if duration else 0.0,
        "latency": summary_ms([x for leg in legs for x in leg.latency]),
        "service_latency": summary_ms([x for leg in legs for x in leg.service]),
        # CPU used per wall second, in percent of one core.
        "cpu_percent": {k: 100 * sum(leg.cpu[k] for leg in legs) / duration for k in cpu_keys} if duration else {},
    }


async def bench(rates: list[int], seconds: float, work: Path) -> dict[str, Any]:
    app = start_fast_app("v1", work / "logs")
    gw = Gateway(work / "state")
    try:
        port = free_port()
        state = RoutingState(
            clusters=(Cluster("bench_v1", (Endpoint("127.0.0.1", app.port),)),),
            routes=(Route("bench", Match(prefix="/"), (WeightedTarget("bench_v1", 100, "bench@v1"),)),),
            listen_port=port,
        )
        await gw.start(state)
        assert gw.process is not None
        pids = {"app": app.proc.pid, "envoy": gw.process.pid}
        urls = {"direct": f"{app.url}/x", "envoy": f"http://127.0.0.1:{port}/x"}
        print("warm-up: 2 s at 500 rps on each path (not recorded)", flush=True)
        for url in urls.values():
            await run_load(LoadSpec(url, 500, 2.0))
        levels = []
        for rps in rates:
            legs: dict[str, list[Leg]] = {"direct": [], "envoy": []}
            for path in ("direct", "envoy", "envoy", "direct"):
                leg = await run_leg(urls[path], rps, seconds / 2, pids)
                legs[path].append(leg)
                print(
                    f"  {rps:>5} rps {path:<6} {leg.total} requests, ok {leg.ok}, late {leg.late}, "
                    f"p50 {summary_ms(leg.latency).get('p50_ms', float('nan')):.2f} ms",
                    flush=True,
                )
            levels.append({"target_rps": rps, **{p: merge(legs[p]) for p in legs}})
        return {"levels": levels, "envoy_pid": gw.process.pid}
    finally:
        await gw.stop()
        app.stop()


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 rates, 2 s per path each (about 20 s)")
    parser.add_argument("--rps", default=None, help="comma-separated rates (default 500,1000,2000)")
    parser.add_argument("--seconds", type=float, default=None, help="seconds per path per rate (default 10)")
    args = parser.parse_args()
    rates = [int(x) for x in (args.rps or ("500,1000" if args.quick else "500,1000,2000")).split(",")]
    seconds = args.seconds or (2.0 if args.quick else 10.0)

    info = machine()
    print_header(
        "gateway overhead: direct to one replica vs through Envoy",
        "latency (from scheduled send time, open loop) and throughput of GET requests, with and without Envoy",
        f"rates {rates} rps, {seconds:g} s per path per rate in ABBA legs (direct, envoy, envoy, direct); "
        "one bench/fast_app.py replica; shiploop loadgen in this process; "
        f"load generator, Envoy ({os.cpu_count()} worker threads by default) and app share "
        f"{info['usable_cpus']} cores",
        info,
    )
    with tempfile.TemporaryDirectory(prefix="shiploop-bench-") as tmp:
        data = asyncio.run(bench(rates, seconds, Path(tmp)))

    rows = []
    ratio_rows = []
    for lv in data["levels"]:
        for path in ("direct", "envoy"):
            m = lv[path]
            lat = m["latency"]
            cpu = m["cpu_percent"]
            rows.append(
                [
                    lv["target_rps"],
                    path,
                    round(m["achieved_rps"]),
                    m["failed"],
                    m["late_starts"],
                    lat["p50_ms"],
                    lat["p90_ms"],
                    lat["p99_ms"],
                    lat["max_ms"],
                    f"{cpu['loadgen']:.0f}/{cpu['envoy']:.0f}/{cpu['app']:.0f}",
                ]
            )
        d, e = lv["direct"], lv["envoy"]
        ratio_rows.append(
            [
                lv["target_rps"],
                ratio(e["latency"]["p50_ms"], d["latency"]["p50_ms"]),
                ratio(e["latency"]["p90_ms"], d["latency"]["p90_ms"]),
                ratio(e["latency"]["p99_ms"], d["latency"]["p99_ms"]),
                ratio(e["latency"]["max_ms"], d["latency"]["max_ms"]),
                ratio(e["achieved_rps"], d["achieved_rps"]),
                e["latency"]["p50_ms"] - d["latency"]["p50_ms"],
                e["service_latency"]["p50_ms"] - d["service_latency"]["p50_ms"],
            ]
        )
        lv["ratio_envoy_over_direct"] = dict(
            zip(["p50", "p90", "p99", "max", "throughput"], ratio_rows[-1][1:6], strict=True)
        )
    print()
    print(
        table(
            [
                "target rps",
                "path",
                "achieved rps",
                "failed",
                "late starts",
                "p50 ms",
                "p90 ms",
                "p99 ms",
                "max ms",
                "CPU % loadgen/envoy/app",
            ],
            rows,
        )
    )
    print()
    print(
        table(
            [
                "target rps",
                "p50 x",
                "p90 x",
                "p99 x",
                "max x",
                "throughput x",
                "added p50 ms",
                "added p50 ms (from send)",
            ],
            ratio_rows,
        )
    )
    print(
        "\nx = through Envoy / direct. CPU % is of one core, per wall second. Late starts: requests the "
        "generator sent more than 10 ms after their scheduled time (it fell behind)."
    )
    write_results(
        NAME,
        {
            "benchmark": NAME,
            "machine": info,
            "params": {"rates": rates, "seconds_per_path": seconds, "quick": args.quick, "legs": "ABBA"},
            **data,
        },
    )


if __name__ == "__main__":
    main()
