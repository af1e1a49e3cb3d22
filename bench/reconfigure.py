"""How fast a weight change reaches live traffic: from the call to the first request served by the new version.

    .venv/bin/python -m bench.reconfigure [--quick] [--flips 200] [--only gateway|api]

A route is flipped between two versions, 100/0 then 0/100 and so on. For each
flip we take the time from the start of the call to the first response through
Envoy that carries the new version in `x-shiploop-version`, and separately the
call's own duration. A poller sends one GET through Envoy about every
millisecond (keep-alive, one connection, same event loop as the caller), so the
"served" time is an upper bound with about 1-2 ms resolution. We also count
responses from the old version to requests sent after the call returned: the
contract is that there are none.

Two variants:
- gateway: `await Gateway.publish(RoutingState)` in this process, two
  bench/fast_app.py replicas as the versions.
- api: a real project (the `shiploop init` starter, `hello`, 2 replicas per
  version) run by the daemon (`python -m shiploop.daemon`, as
  `shiploop up` does); a canary is deployed through the API, then each flip is
  `POST /v1/services/hello/weights` with the bearer token. This is the number
  the control plane promises: from API call to Envoy serving the new weights.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from bench.common import machine, print_header, start_fast_app, starter_daemon, summary_ms, table, write_results
from shiploop.gateway.gateway import Gateway
from shiploop.gateway.model import Cluster, Endpoint, Match, Route, RoutingState, WeightedTarget
from shiploop.gateway.render import VERSION_HEADER
from shiploop.loadgen import HttpClient, RequestError
from shiploop.procs import free_port

NAME = "reconfigure"
POLL_INTERVAL_S = 0.001


class Poller:
    """GETs through Envoy about every millisecond; keeps (sent_at, done_at, version) of each response."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.obs: list[tuple[float, float, str]] = []
        self.errors = 0
        self._task: asyncio.Task[None] | None = None
        self._stop = False

    async def __aenter__(self) -> Poller:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop = True
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        async with HttpClient(self.url, max_connections=1, timeout_s=2.0) as client:
            while not self._stop:
                try:
                    r = await client.get()
                    self.obs.append((r.sent_at, loop.time(), r.headers.get(VERSION_HEADER, "")))
                except RequestError:
                    self.errors += 1
                await asyncio.sleep(POLL_INTERVAL_S)

    async def wait_for(self, version: str, after: float, timeout_s: float = 10.0) -> float:
        """Loop time at which the first response from `version` completed after `after`."""
        deadline = time.monotonic() + timeout_s
        i = 0
        while True:
            obs = self.obs
            while i < len(obs):
                sent, done, v = obs[i]
                i += 1
                if done > after and v == version:
                    return done
            if time.monotonic() > deadline:
                raise RuntimeError(f"{version} not served within {timeout_s:g}s of the change")
            await asyncio.sleep(0.0005)

    def stale_after(self, old: str, t: float) -> int:
        """Responses from `old` to requests sent after loop time `t`."""
        return sum(1 for sent, _, v in self.obs if sent > t and v == old)


async def flip_loop(
    poller: Poller,
    flips: int,
    labels: tuple[str, str],
    change: Callable[[int], Awaitable[None]],
    pause_s: float,
) -> list[dict[str, float]]:
    """Run `flips` changes; change(i) sends traffic to labels[i % 2]. Returns per-flip timings."""
    loop = asyncio.get_running_loop()
    rows = []
    # The start state serves labels[1]; flip 0 goes to labels[0].
    await poller.wait_for(labels[1], 0.0)
    for i in range(flips):
        new, old = labels[i % 2], labels[(i + 1) % 2]
        t0 = loop.time()
        await change(i)
        t1 = loop.time()
        served = await poller.wait_for(new, t0)
        await asyncio.sleep(pause_s)  # let the poller see the steady state before the next flip
        rows.append({"call_s": t1 - t0, "served_s": served - t0, "stale_after_return": poller.stale_after(old, t1)})
    return rows


def summarize(rows: list[dict[str, float]], poller: Poller) -> dict[str, Any]:
    gaps = [b[0] - a[0] for a, b in zip(poller.obs, poller.obs[1:], strict=False)]
    return {
        "flips": len(rows),
        "call": summary_ms([r["call_s"] for r in rows]),
        "served": summary_ms([r["served_s"] for r in rows]),
        "served_before_call_returned": sum(1 for r in rows if r["served_s"] < r["call_s"]),
        "stale_after_return": sum(int(r["stale_after_return"]) for r in rows),
        "poll_requests": len(poller.obs),
        "poll_errors": poller.errors,
        "poll_interval": summary_ms(gaps),
        "per_flip": rows,
    }


# -- variant 1: Gateway.publish in this process ------------------------------------------------


async def gateway_variant(flips: int, work: Path) -> dict[str, Any]:
    apps = [start_fast_app(v, work / "logs") for v in ("a", "b")]
    gw = Gateway(work / "gw-state")
    try:
        port = free_port()
        clusters = tuple(Cluster(f"bench_{a.version}", (Endpoint("127.0.0.1", a.port),)) for a in apps)

        def state(to: int) -> RoutingState:
            targets = tuple(
                WeightedTarget(f"bench_{a.version}", 100 if j == to else 0, f"bench@{a.version}")
                for j, a in enumerate(apps)
            )
            routes = (Route("bench", Match(prefix="/"), targets),)
            return RoutingState(clusters=clusters, routes=routes, listen_port=port)

        await gw.start(state(1))

        async def change(i: int) -> None:
            await gw.publish(state(i % 2))

        async with Poller(f"http://127.0.0.1:{port}/x") as poller:
            rows = await flip_loop(poller, flips, ("bench@a", "bench@b"), change, pause_s=0.03)
        return summarize(rows, poller)
    finally:
        await gw.stop()
        for a in apps:
            a.stop()


# -- variant 2: the daemon's HTTP API -----------------------------------------------------------


async def api_variant(flips: int, work: Path) -> dict[str, Any]:
    with starter_daemon(work) as daemon:
        async with httpx.AsyncClient(
            base_url=daemon.api, headers={"Authorization": f"Bearer {daemon.token}"}, timeout=60
        ) as api:
            status = (await api.get("/v1/status")).raise_for_status().json()
            stable = next(v["id"] for v in status["services"][0]["versions"] if v["track"] == "stable")
            # A changed copy of the service: a new content-addressed version, deployed as canary at 0%.
            spec = daemon.root / "hello" / "service.yaml"
            spec.write_text(spec.read_text().replace("GREETING: hello", "GREETING: howdy"))
            r = await api.post("/v1/services/hello/deploy", json={"weight": 0})
            canary = r.raise_for_status().json()["version"]
            print(f"  project up: hello@{stable} stable, hello@{canary} canary at 0%", flush=True)
            ids = (canary, stable)

            async def change(i: int) -> None:
                weights = {ids[i % 2]: 100, ids[(i + 1) % 2]: 0}
                resp = await api.post("/v1/services/hello/weights", json={"weights": weights})
                resp.raise_for_status()

            async with Poller(f"{daemon.gateway}/hello/") as poller:
                rows = await flip_loop(poller, flips, (f"hello@{canary}", f"hello@{stable}"), change, pause_s=0.03)
            result = summarize(rows, poller)
            result["versions"] = {"stable": stable, "canary": canary}
            return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="20 flips per variant")
    parser.add_argument("--flips", type=int, default=None, help="flips per variant (default 200)")
    parser.add_argument("--only", choices=["gateway", "api"], default=None)
    args = parser.parse_args()
    flips = args.flips or (20 if args.quick else 200)
    variants = [args.only] if args.only else ["gateway", "api"]

    info = machine()
    print_header(
        "reconfigure: weight change to first request served by the new version",
        "per flip: time from the call to the first response through Envoy from the new version; "
        "the call's own duration; old-version responses to requests sent after the call returned",
        f"{flips} flips (100/0 <-> 0/100) per variant {variants}; a poller GETs through Envoy every ~1 ms "
        "(served time is an upper bound, ~1-2 ms resolution); 30 ms pause between flips",
        info,
    )
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="shiploop-bench-") as tmp:
        for v in variants:
            print(f"variant {v}: {flips} flips", flush=True)
            fn = gateway_variant if v == "gateway" else api_variant
            results[v] = asyncio.run(fn(flips, Path(tmp) / v))

    rows = []
    labels = {"gateway": "Gateway.publish()", "api": "POST /v1/services/hello/weights"}
    for v, res in results.items():
        for what, key in (("call returns", "call"), ("new version served", "served")):
            s = res[key]
            rows.append([labels[v], what, s["count"], s["p50_ms"], s["p90_ms"], s["p99_ms"], s["max_ms"]])
    print()
    print(table(["variant", "measured", "flips", "p50 ms", "p90 ms", "p99 ms", "max ms"], rows))
    print()
    print(
        table(
            ["variant", "served before call returned", "stale after return", "poll requests", "poll p50 gap ms"],
            [
                [
                    labels[v],
                    f"{r['served_before_call_returned']}/{r['flips']}",
                    r["stale_after_return"],
                    r["poll_requests"],
                    r["poll_interval"]["p50_ms"],
                ]
                for v, r in results.items()
            ],
        )
    )
    write_results(
        NAME,
        {
            "benchmark": NAME,
            "machine": info,
            "params": {"flips": flips, "quick": args.quick, "poll_interval_s": POLL_INTERVAL_S, "pause_s": 0.03},
            "variants": results,
        },
    )


if __name__ == "__main__":
    main()
