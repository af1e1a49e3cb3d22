"""A small client for Prometheus's HTTP query API: instant queries, answers parsed and checked.

Only what the rollouts need: `POST /api/v1/query` with a PromQL text, and the
documented answer shapes (https://prometheus.io/docs/prometheus/latest/querying/api/):
an instant vector, or a range vector (a selector with `[10s]`: the raw samples
with their scrape times), or an error:

    {"status": "success", "data": {"resultType": "vector",
      "result": [{"metric": {"__name__": "...", "version": "..."}, "value": [1700000000.123, "42"]}]}}
    {"status": "success", "data": {"resultType": "matrix",
      "result": [{"metric": {...}, "values": [[1700000000.1, "40"], [1700000005.1, "42"]]}]}}
    {"status": "error", "errorType": "bad_data", "error": "parse error: ..."}

Every failure (unreachable, an HTTP error, an error answer, a shape we do not
know) is one `PrometheusQueryError` with a one-line message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx


class PrometheusQueryError(Exception):
    """A query that gave no usable answer; the message is one line."""


@dataclass(frozen=True)
class Series:
    """One series of an answer: its labels, and its samples (unix seconds, value), oldest first."""

    labels: dict[str, str]
    points: tuple[tuple[float, float], ...]

    @property
    def value(self) -> float:
        """The latest value (an instant vector's only one)."""
        return self.points[-1][1]


def _short(text: str, limit: int = 200) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def parse_answer(body: Any) -> list[Series]:
    """The series of a vector or matrix answer; PrometheusQueryError for an error or another shape."""
    if not isinstance(body, dict):
        raise PrometheusQueryError("answer is not a JSON object")
    if body.get("status") != "success":
        kind = body.get("errorType") or "error"
        raise PrometheusQueryError(f"{kind}: {_short(str(body.get('error') or body.get('status')))}")
    data = body.get("data")
    kind = data.get("resultType") if isinstance(data, dict) else None
    if kind not in ("vector", "matrix") or not isinstance(data, dict) or not isinstance(data.get("result"), list):
        raise PrometheusQueryError(f"expected a vector or a matrix, got {kind or type(data).__name__}")
    out: list[Series] = []
    for item in data["result"]:
        try:
            raw = [item["value"]] if kind == "vector" else item["values"]
            points = tuple((float(t), float(v)) for t, v in raw)
            labels = {str(k): str(v) for k, v in item["metric"].items()}
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise PrometheusQueryError(f"a series of unexpected shape: {_short(json.dumps(item))}") from e
        if points:
            out.append(Series(labels, points))
    return out


class PrometheusClient:
    """Instant queries against one Prometheus (its base URL, e.g. http://127.0.0.1:9090)."""

    def __init__(self, http: httpx.AsyncClient, url: str) -> None:
        self.http = http
        self.url = url.rstrip("/")

    async def query(self, promql: str) -> list[Series]:
        try:
            # POST with a form body: the query texts name every version and can be long.
            r = await self.http.post(f"{self.url}/api/v1/query", data={"query": promql})
        except httpx.HTTPError as e:
            raise PrometheusQueryError(f"{self.url}: {type(e).__name__}{': ' + str(e) if str(e) else ''}") from e
        try:
            body = r.json()
        except ValueError:
            raise PrometheusQueryError(f"{self.url}: HTTP {r.status_code}, not a Prometheus answer") from None
        # Prometheus answers a bad query with 400/422 and a JSON error body: report its words.
        return parse_answer(body)
