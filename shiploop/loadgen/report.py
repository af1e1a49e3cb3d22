"""Results of single requests and the report that sums up a load run."""

from __future__ import annotations

import math
import threading
from array import array
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

MISSING = "(missing)"  # header_counts key for responses without the captured header


@dataclass(frozen=True, slots=True)
class Result:
    """One request of a run. Times are seconds since the run started."""

    index: int
    status: int  # 0 when no HTTP response came back (see error)
    error: str | None  # "timeout", "connect", "closed", "protocol", "overload"; None when a response came back
    scheduled_at: float
    sent_at: float | None  # None when the request was never written
    done_at: float
    late: bool  # not sent within the late threshold of its scheduled time
    headers: dict[str, str] = field(default_factory=dict)  # captured response headers, lower-case names
    body: bytes | None = None  # only when the run keeps bodies
    error_detail: str | None = None

    @property
    def latency_s(self) -> float:
        """From the scheduled time: includes any queueing, so coordinated omission is not hidden."""
        return self.done_at - self.scheduled_at

    @property
    def service_time_s(self) -> float | None:
        """From the moment the request was written."""
        return None if self.sent_at is None else self.done_at - self.sent_at

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 400


@dataclass(frozen=True, slots=True)
class Latency:
    """Exact percentiles (nearest rank) of the samples, in seconds."""

    count: int = 0
    mean_s: float = 0.0
    p50_s: float = 0.0
    p90_s: float = 0.0
    p99_s: float = 0.0
    p999_s: float = 0.0
    max_s: float = 0.0

    @classmethod
    def of(cls, samples: Sequence[float]) -> Latency:
        if not samples:
            return cls()
        ordered = sorted(samples)
        n = len(ordered)

        def rank(q: float) -> float:
            return ordered[max(0, math.ceil(q * n) - 1)]

        return cls(n, sum(ordered) / n, rank(0.5), rank(0.9), rank(0.99), rank(0.999), ordered[-1])


@dataclass(frozen=True)
class LoadReport:
    url: str
    method: str
    target_rps: float
    planned_duration_s: float  # inf for a run that went on until stopped
    duration_s: float  # from the first scheduled request to the last completion
    total: int
    achieved_rps: float
    ok: int  # 2xx and 3xx
    failed: int  # everything else, including errors
    errors: int  # no HTTP response at all (status 0)
    status_counts: dict[int, int]
    error_counts: dict[str, int]
    latency: Latency  # from scheduled time, responses only
    service_latency: Latency  # from send time, responses only
    late_starts: int
    max_start_lag_s: float
    header_counts: dict[str, dict[str, int]]  # captured header -> value -> responses
    connections_opened: int

    @property
    def unanswered_share(self) -> float:
        """The share of requests that got no HTTP response at all (connect errors, timeouts...)."""
        return self.errors / self.total if self.total else 0.0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status_counts"] = {str(k): v for k, v in sorted(self.status_counts.items())}
        if math.isinf(self.planned_duration_s):
            data["planned_duration_s"] = None
        return data

    def render(self) -> str:
        planned = "until stopped" if math.isinf(self.planned_duration_s) else f"{self.planned_duration_s:g} s"
        statuses = "  ".join(f"{k}={v}" for k, v in sorted(self.status_counts.items()) if k)
        errors = "  ".join(f"{k}={v}" for k, v in sorted(self.error_counts.items()))
        lag = _ms(self.max_start_lag_s) if self.max_start_lag_s or self.latency.count else "-"
        lines = [
            f"{self.method} {self.url}  target {self.target_rps:g} rps, {planned}",
            f"requests   {self.total} in {self.duration_s:.2f} s = {self.achieved_rps:.1f} rps; "
            f"ok {self.ok}, failed {self.failed}",
            f"starts     late {self.late_starts}, max lag {lag}; "
            f"connections {self.connections_opened}",
            f"status     {statuses or '-'}" + (f"  errors: {errors}" if errors else ""),
            f"{'latency':<12}{'p50':>9}{'p90':>9}{'p99':>9}{'p99.9':>9}{'max':>9}",
        ]
        for label, lat in (("scheduled", self.latency), ("sent", self.service_latency)):
            cells = (lat.p50_s, lat.p90_s, lat.p99_s, lat.p999_s, lat.max_s)
            # No response, no latency: a dash, never a 0.0ms that reads as fast.
            lines.append(f"  {label:<10}" + "".join(f"{_ms(v) if lat.count else '-':>9}" for v in cells))
        for name, counts in self.header_counts.items():
            values = "  ".join(f"{v}={n}" for v, n in sorted(counts.items()))
            lines.append(f"{name}  {values or '-'}")
        if self.total and self.errors == self.total:
            lines.append(f"no request got a response ({errors}): is anything listening at {self.url}?")
        elif self.total == 0:
            lines.append("no request was sent")
        return "\n".join(lines)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}ms" if seconds < 10 else f"{seconds:.1f}s"


class Recorder:
    """Aggregates results as they arrive; snapshot() may be called from any thread."""

    def __init__(self, capture_headers: Sequence[str] = ()) -> None:
        self._lock = threading.Lock()
        self._capture = tuple(name.lower() for name in capture_headers)
        self._status: Counter[int] = Counter()
        self._errors: Counter[str] = Counter()
        self._headers: dict[str, Counter[str]] = {name: Counter() for name in self._capture}
        # float64 arrays, 8 bytes a sample, where a list of floats costs ~32.
        self._latency = array("d")
        self._service = array("d")
        self._late = 0
        self._max_lag = 0.0
        self.last_done = 0.0

    @property
    def total(self) -> int:
        with self._lock:
            return self._status.total()

    def add(self, result: Result) -> None:
        with self._lock:
            self._status[result.status] += 1
            self.last_done = max(self.last_done, result.done_at)
            if result.late:
                self._late += 1
            if result.sent_at is not None:
                self._max_lag = max(self._max_lag, result.sent_at - result.scheduled_at)
            if result.error is not None:
                self._errors[result.error] += 1
                return
            self._latency.append(result.done_at - result.scheduled_at)
            if result.sent_at is not None:
                self._service.append(result.done_at - result.sent_at)
            for name in self._capture:
                self._headers[name][result.headers.get(name, MISSING)] += 1

    def snapshot(
        self,
        *,
        url: str,
        method: str,
        target_rps: float,
        planned_duration_s: float,
        duration_s: float,
        connections_opened: int,
    ) -> LoadReport:
        with self._lock:
            status = dict(self._status)
            errors = dict(self._errors)
            headers = {name: dict(counts) for name, counts in self._headers.items()}
            latency, service = list(self._latency), list(self._service)
            late, max_lag = self._late, self._max_lag
        total = sum(status.values())
        ok = sum(n for code, n in status.items() if 200 <= code < 400)
        return LoadReport(
            url=url,
            method=method,
            target_rps=target_rps,
            planned_duration_s=planned_duration_s,
            duration_s=duration_s,
            total=total,
            achieved_rps=total / duration_s if duration_s > 0 else 0.0,
            ok=ok,
            failed=total - ok,
            errors=status.get(0, 0),
            status_counts=status,
            error_counts=errors,
            latency=Latency.of(latency),
            service_latency=Latency.of(service),
            late_starts=late,
            max_start_lag_s=max_lag,
            header_counts=headers,
            connections_opened=connections_opened,
        )
