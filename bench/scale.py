"""How routing config cost grows with the number of services: render, write, and Envoy's apply.

    .venv/bin/python -m bench.scale [--quick] [--sizes 100,250,500,1000]

For N services, each with one cluster of 2 endpoints (127.0.0.1 ports nobody
listens on: STATIC clusters need no live endpoint to be applied) and 5 routes
(a prefix, an exact path, a header match, a method match and a regex, all under
/svc-NNNN/), we time in this process:
- render: RoutingState -> the three xDS dicts (shiploop.gateway.render);
- serialize: json.dumps of them, as the publisher writes them (indent=1);
- write: writing the three files (no fsync, as the publisher);
- Python peak memory of render + serialize (tracemalloc), and the process's
  maximum RSS (getrusage; a high-water mark over the whole run, so it only grows).
Then, against a fresh Envoy per N started empty (no clusters, no routes):
- apply: `await Gateway.publish(state)` until it returns, which waits for Envoy
  to report the generation accepted (two generations: clusters, then routes);
- Envoy's VmRSS before and after the apply (/proc/<pid>/status), and the CPU
  time Envoy spent applying;
- a small change in the big config (one route's timeout), published 5 times:
  the cost of a weight change once N services exist.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import tempfile
import time
import tracemalloc
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.common import cpu_seconds, machine, print_header, rss_kb, table, write_results
from shiploop.gateway import render
from shiploop.gateway.gateway import Gateway
from shiploop.gateway.model import Cluster, Endpoint, Match, Route, RoutingState, WeightedTarget
from shiploop.gateway.publisher import _STAT_PATTERN
from shiploop.procs import free_port

NAME = "scale"
ROUTES_PER_SERVICE = 5


def build_state(n: int, listen_port: int) -> RoutingState:
    clusters = []
    routes = []
    for i in range(n):
        svc = f"svc-{i:04d}"
        cname = f"{svc}_v1"
        # Ports in a range nothing listens on; endpoints are never contacted.
        clusters.append(Cluster(cname, (Endpoint("127.0.0.1", 20000 + 2 * i), Endpoint("127.0.0.1", 20001 + 2 * i))))
        target = (WeightedTarget(cname, 100, f"{svc}@v1"),)
        routes += [
            Route(f"{svc}-health", Match(path=f"/{svc}/healthz"), target),
            Route(f"{svc}-beta", Match(prefix=f"/{svc}/api/", headers=(("x-beta", "1"),)), target),
            Route(f"{svc}-write", Match(prefix=f"/{svc}/write/", methods=("POST", "PUT")), target),
            Route(f"{svc}-item", Match(regex=f"/{svc}/items/[0-9]+"), target),
            Route(f"{svc}-main", Match(prefix=f"/{svc}/"), target, rewrite="/"),
        ]
    return RoutingState(clusters=tuple(clusters), routes=tuple(routes), listen_port=listen_port)


def render_all(state: RoutingState, xds_dir: Path) -> dict[str, Any]:
    """The three discovery responses, exactly as the publisher renders them."""
    return {
        "cds.json": render.discovery_response("1", [render.cluster(c) for c in state.clusters]),
        "lds.json": render.discovery_response("1", [render.listener(state, xds_dir)]),
        "rds.json": render.discovery_response("1", [render.route_configuration(state)]),
    }


def python_side(n: int, work: Path, repeats: int) -> dict[str, Any]:
    state = build_state(n, 8080)
    renders, dumps, compact, writes = [], [], [], []
    sizes: dict[str, int] = {}
    for r in range(repeats):
        t0 = time.perf_counter()
        docs = render_all(state, work)
        t1 = time.perf_counter()
        texts = {name: json.dumps(body, indent=1) for name, body in docs.items()}
        t2 = time.perf_counter()
        for body in docs.values():
            json.dumps(body)
        compact.append(time.perf_counter() - t2)
        t2 = time.perf_counter()
        out = work / f"py-{n}-{r}"
        out.mkdir(parents=True)
        for name, text in texts.items():
            (out / name).write_text(text)
        t3 = time.perf_counter()
        renders.append(t1 - t0)
        dumps.append(t2 - t1)
        writes.append(t3 - t2)
        sizes = {name: len(text.encode()) for name, text in texts.items()}
    del docs, texts
    tracemalloc.start()
    tracemalloc.reset_peak()
    base, _ = tracemalloc.get_traced_memory()
    docs = render_all(state, work)
    texts = {name: json.dumps(body, indent=1) for name, body in docs.items()}
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del docs, texts
    return {
        "render_ms": 1000 * statistics.median(renders),
        "serialize_ms": 1000 * statistics.median(dumps),
        # json.dumps without indent uses the C encoder; with indent it falls back to pure Python.
        "serialize_compact_ms": 1000 * statistics.median(compact),
        "write_ms": 1000 * statistics.median(writes),
        "repeats": repeats,
        "bytes": sizes,
        "total_mb": sum(sizes.values()) / 1e6,
        "tracemalloc_peak_mb": (peak - base) / 1e6,
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


async def envoy_side(n: int, work: Path, small_changes: int) -> dict[str, Any]:
    gw = Gateway(work / f"envoy-{n}")
    try:
        port = free_port()
        await gw.start(RoutingState(listen_port=port))
        assert gw.process is not None
        pid = gw.process.pid
        await asyncio.sleep(0.5)  # let start-up allocations settle before the baseline
        rss_before = rss_kb(pid)
        cpu_before = cpu_seconds(pid) or 0.0
        state = build_state(n, port)
        t0, p0 = time.perf_counter(), time.process_time()
        result = await gw.publish(state)
        apply_s = time.perf_counter() - t0
        apply_py_cpu = time.process_time() - p0
        cpu_apply = (cpu_seconds(pid) or 0.0) - cpu_before
        rss_after = rss_kb(pid)
        await asyncio.sleep(1.0)
        rss_settled = rss_kb(pid)
        # The publisher confirms each generation by polling filtered admin stats every 3 ms;
        # their cost grows with the number of stats (per cluster), on Envoy's main thread.
        assert gw.admin is not None
        stat_calls = []
        for _ in range(10):
            t0 = time.perf_counter()
            await gw.admin.stats(_STAT_PATTERN)
            stat_calls.append(time.perf_counter() - t0)
        stats_count = len((await gw.admin._client.get("/stats")).text.splitlines())
        small = []
        cpu_before = cpu_seconds(pid) or 0.0
        p0 = time.process_time()
        routes = list(state.routes)
        for k in range(small_changes):
            routes[-1] = replace(routes[-1], timeout_s=15.0 + k + 1)
            t0 = time.perf_counter()
            await gw.publish(replace(state, routes=tuple(routes)))
            small.append(time.perf_counter() - t0)
        cpu_small = (cpu_seconds(pid) or 0.0) - cpu_before
        py_small = time.process_time() - p0
        return {
            "apply_ms": 1000 * apply_s,
            "generations": result.generation - 2,  # start() published generations 1 and 2
            "envoy_cpu_apply_s": cpu_apply,
            # This process's CPU during the publish call (render, json, write, bookkeeping, stats parsing).
            "apply_py_cpu_s": apply_py_cpu,
            "envoy_rss_before_mb": (rss_before or 0) / 1024,
            "envoy_rss_after_mb": (rss_after or 0) / 1024,
            "envoy_rss_settled_mb": (rss_settled or 0) / 1024,
            "small_change_ms": [1000 * s for s in small],
            "small_change_median_ms": 1000 * statistics.median(small) if small else None,
            "small_change_envoy_cpu_ms": 1000 * cpu_small / max(1, len(small)),
            "small_change_py_cpu_ms": 1000 * py_small / max(1, len(small)),
            "envoy_stats": stats_count,
            "admin_stats_call_ms": 1000 * statistics.median(stat_calls),
        }
    finally:
        await gw.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="sizes 100 and 250, one repeat")
    parser.add_argument("--sizes", default=None, help="comma-separated service counts (default 100,250,500,1000)")
    args = parser.parse_args()
    sizes = [int(x) for x in (args.sizes or ("100,250" if args.quick else "100,250,500,1000")).split(",")]
    repeats = 1 if args.quick else 3
    small_changes = 2 if args.quick else 5

    info = machine()
    print_header(
        "scale: render and apply N services x 5 routes",
        "render / serialize / write time and Python memory in this process; Envoy's apply time (publish until "
        "Envoy reports the generation accepted), Envoy VmRSS, and a one-route change at size N",
        f"sizes {sizes}; each service 1 cluster (2 static endpoints) and {ROUTES_PER_SERVICE} routes; "
        f"Python timings median of {repeats}; a fresh Envoy per size, started empty; "
        f"{small_changes} one-route changes per size",
        info,
    )
    levels = []
    with tempfile.TemporaryDirectory(prefix="shiploop-bench-") as tmp:
        work = Path(tmp)
        for n in sizes:
            py = python_side(n, work, repeats)
            env = asyncio.run(envoy_side(n, work, small_changes))
            levels.append({"services": n, "routes": n * ROUTES_PER_SERVICE, "clusters": n, **py, **env})
            print(
                f"  N={n}: render {py['render_ms']:.1f} ms, serialize {py['serialize_ms']:.1f} ms, "
                f"write {py['write_ms']:.1f} ms, apply {env['apply_ms']:.0f} ms, "
                f"envoy RSS {env['envoy_rss_after_mb']:.0f} MB",
                flush=True,
            )
    py_rows = [
        [
            lv["services"],
            lv["routes"],
            lv["total_mb"],
            lv["render_ms"],
            lv["serialize_ms"],
            lv["serialize_compact_ms"],
            lv["write_ms"],
            lv["tracemalloc_peak_mb"],
            lv["maxrss_mb"],
        ]
        for lv in levels
    ]
    envoy_rows = [
        [
            lv["services"],
            lv["apply_ms"],
            lv["apply_py_cpu_s"],
            lv["envoy_cpu_apply_s"],
            lv["envoy_rss_before_mb"],
            lv["envoy_rss_after_mb"],
            lv["small_change_median_ms"],
            lv["small_change_py_cpu_ms"],
            lv["small_change_envoy_cpu_ms"],
            lv["envoy_stats"],
            lv["admin_stats_call_ms"],
        ]
        for lv in levels
    ]
    print("\nPython side (one render of the whole config):")
    print(
        table(
            [
                "services",
                "routes",
                "xDS MB",
                "render ms",
                "json indent=1 ms",
                "json compact ms",
                "write ms",
                "py peak MB",
                "py maxrss MB",
            ],
            py_rows,
        )
    )
    print("\nEnvoy side (fresh Envoy per size):")
    print(
        table(
            [
                "services",
                "apply ms",
                "py CPU s",
                "envoy CPU s",
                "RSS before MB",
                "RSS after MB",
                "1-route change ms",
                "py CPU/change ms",
                "envoy CPU/change ms",
                "envoy stats",
                "admin /stats ms",
            ],
            envoy_rows,
        )
    )
    growth: dict[str, Any] = {}
    first, last = levels[0], levels[-1]
    if len(levels) > 1:
        scale = last["services"] / first["services"]
        growth = {
            "from_services": first["services"],
            "to_services": last["services"],
            "size_ratio": scale,
            "apply_ratio": last["apply_ms"] / first["apply_ms"],
            "render_ratio": last["render_ms"] / first["render_ms"],
            "small_change_ratio": last["small_change_median_ms"] / first["small_change_median_ms"],
            "envoy_rss_growth_mb": last["envoy_rss_after_mb"] - first["envoy_rss_after_mb"],
            "envoy_rss_per_service_kb": 1024
            * (last["envoy_rss_after_mb"] - first["envoy_rss_after_mb"])
            / (last["services"] - first["services"]),
        }
        print(
            f"\n{first['services']} -> {last['services']} services (x{scale:g}): "
            f"apply time x{growth['apply_ratio']:.1f}, "
            f"render time x{growth['render_ratio']:.1f}, one-route change x{growth['small_change_ratio']:.1f}; "
            f"Envoy RSS +{growth['envoy_rss_growth_mb']:.0f} MB "
            f"(~{growth['envoy_rss_per_service_kb']:.0f} kB per service with 5 routes)"
        )
    print(
        "apply = Gateway.publish() of the whole config into an empty Envoy: render + write + Envoy parse/apply, "
        "two generations (clusters first, then routes). 1-route change = publish of the same config with one "
        "route's timeout changed (one generation), median of the changes. py CPU = this process's CPU during the "
        "call; envoy CPU = Envoy's (all threads), including the admin /stats reads the publisher polls every 3 ms. "
        "py maxrss is the process high-water mark so far."
    )
    write_results(
        NAME,
        {
            "benchmark": NAME,
            "machine": info,
            "params": {
                "sizes": sizes,
                "routes_per_service": ROUTES_PER_SERVICE,
                "endpoints_per_cluster": 2,
                "repeats": repeats,
                "small_changes": small_changes,
                "quick": args.quick,
            },
            "levels": levels,
            "growth": growth,
        },
    )


if __name__ == "__main__":
    main()
