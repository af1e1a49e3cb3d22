"""A small client for Envoy's admin interface: stats, readiness, histograms."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from shiploop.loopback import loopback_client


@dataclass(frozen=True)
class Histogram:
    """Cumulative latency buckets of one histogram: (upper bound ms, count at or below)."""

    buckets: tuple[tuple[float, int], ...]


class EnvoyAdmin:
    """Envoy's admin API on its unix socket (see render.bootstrap)."""

    def __init__(self, socket_path: Path, timeout_s: float = 2.0) -> None:
        self.socket_path = socket_path
        self.address = f"unix:{socket_path}"
        self._client = loopback_client(
            transport=httpx.AsyncHTTPTransport(uds=str(socket_path), verify=False),
            base_url="http://envoy-admin",
            timeout=timeout_s,
        )

    async def close(self) -> None:
        await self._client.aclose()

    async def ready(self) -> bool:
        try:
            r = await self._client.get("/ready")
        except httpx.HTTPError:
            return False
        return r.status_code == 200 and r.text.strip() == "LIVE"

    async def stats(self, pattern: str) -> dict[str, Any]:
        """Counters, gauges and text readouts whose name matches the regex `pattern`."""
        r = await self._client.get("/stats", params={"format": "json", "filter": pattern})
        r.raise_for_status()
        out: dict[str, Any] = {}
        for item in r.json().get("stats", []):
            if "name" in item:
                out[item["name"]] = item["value"]
        return out

    async def histograms(self, pattern: str) -> dict[str, Histogram]:
        """Cumulative bucket counts of the histograms matching `pattern` (since Envoy started)."""
        r = await self._client.get(
            "/stats", params={"format": "json", "filter": pattern, "histogram_buckets": "cumulative"}
        )
        r.raise_for_status()
        out: dict[str, Histogram] = {}
        for item in r.json().get("stats", []):
            hist = item.get("histograms")
            if not isinstance(hist, list):
                continue
            for h in hist:
                buckets = tuple((float(b["upper_bound"]), int(b["cumulative"])) for b in h.get("buckets", []))
                out[h["name"]] = Histogram(buckets)
        return out


# Envoy logs e.g. "Filesystem config update rejected: invalid perl operator: (?=".
_REJECTION = re.compile(r"rejected: (.*)$")


def rejection_reason(log_text: str) -> str | None:
    """The last config rejection Envoy wrote to its log, if any."""
    reason = None
    for line in log_text.splitlines():
        m = _REJECTION.search(line)
        if m:
            reason = m.group(1).strip()
    return reason
