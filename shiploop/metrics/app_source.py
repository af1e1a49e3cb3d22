"""Business counters scraped from each replica's Prometheus endpoint.

Only cumulative series are kept: counter and untyped samples, and the `_sum`
and `_count` of histograms and summaries. Gauges, buckets and quantiles are
dropped, because adding them up over replicas or taking deltas means nothing.
Label sets are summed into one value per sample name.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field

import httpx

from shiploop.metrics.prom_text import Exposition, parse_exposition


@dataclass(frozen=True)
class AppScrape:
    counters: dict[str, float]  # summed over the replicas that answered and over label sets
    errors: list[str]  # one line per replica that did not answer with valid metrics
    per_replica: dict[int, dict[str, float]] = field(default_factory=dict)  # port -> counters, answering ones only

    @property
    def ok(self) -> bool:
        return not self.errors


def cumulative_counters(expo: Exposition) -> dict[str, float]:
    out: dict[str, float] = {}
    for s in expo.samples:
        kind = expo.type_of(s.name)
        if kind == "gauge":
            continue
        if kind in ("histogram", "summary") and not s.name.endswith(("_sum", "_count")):
            continue
        if math.isnan(s.value) or math.isinf(s.value):
            raise ValueError(f"{s.name} is {s.value}, not a count")
        out[s.name] = out.get(s.name, 0.0) + s.value
    return out


async def _scrape_one(http: httpx.AsyncClient, port: int, path: str) -> dict[str, float]:
    r = await http.get(f"http://127.0.0.1:{port}{path}")
    if r.status_code != 200:
        raise ValueError(f"HTTP {r.status_code}")
    return cumulative_counters(parse_exposition(r.text))


async def scrape_app_metrics(http: httpx.AsyncClient, ports: list[int], path: str = "/metrics") -> AppScrape:
    """Scrape every replica at once. A replica that fails is listed in `errors` and adds nothing."""
    results = await asyncio.gather(*(_scrape_one(http, p, path) for p in ports), return_exceptions=True)
    total: dict[str, float] = {}
    errors: list[str] = []
    per_replica: dict[int, dict[str, float]] = {}
    for port, result in zip(ports, results, strict=True):
        if isinstance(result, BaseException):
            if not isinstance(result, Exception):
                raise result  # cancellation and the like are not scrape errors
            detail = str(result) or type(result).__name__
            errors.append(f"replica on port {port}: {path}: {detail}")
            continue
        per_replica[port] = result
        for name, value in result.items():
            total[name] = total.get(name, 0.0) + value
    return AppScrape(total, errors, per_replica)
