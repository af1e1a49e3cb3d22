"""Open-loop load: request i starts at t0 + i/rps whether or not earlier ones finished.

A closed loop (send, wait, send) slows down when the server does and so hides
exactly the latency we want to see (coordinated omission). Here every request
has a scheduled time; its latency counts from that time, and separately from
the moment it was actually written. A request written later than the late
threshold after its scheduled time is a "late start": the generator (or its
connection pool) could not keep up, and the report says so.

asyncio wakes timers on a millisecond grid (epoll), so latency from the
scheduled time carries up to ~1 ms of the generator's own timer jitter; the
latency from the send time does not.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypedDict, Unpack

from shiploop.loadgen.client import HttpClient, RequestError, Response, split_url
from shiploop.loadgen.errors import LoadError
from shiploop.loadgen.report import LoadReport, Recorder, Result

DEFAULT_LATE_THRESHOLD_S = 0.010
# One process sends at most ~8,000 rps on the 2-core machine we measure on; 50,000
# leaves room for a faster one and still refuses a typo like 1e9, which grew to
# 1.35 GB in 15 s creating tasks it could never run.
MAX_RPS = 50_000.0
# A finished request costs the recorder ~16 bytes (two float64 latencies): 10
# million requests are ~160 MB. A run planned beyond that is refused up front.
MAX_REQUESTS = 10_000_000
# Requests waiting for a connection or an answer. Beyond this the target cannot
# keep up; a new request is counted as an "overload" error without being sent
# rather than queued, so memory stays bounded (~3 KB per waiting task).
MAX_IN_FLIGHT = 20_000


@dataclass(frozen=True)
class LoadSpec:
    url: str
    rps: float
    duration_s: float = math.inf  # inf: until stopped
    headers: Mapping[str, str] | None = None
    method: str = "GET"
    body: bytes | None = None
    timeout_s: float = 5.0
    max_connections: int = 256
    on_result: Callable[[Result], None] | None = None  # called on the event loop: keep it quick
    capture_headers: Sequence[str] = field(default_factory=tuple)
    keep_body: bool = False
    late_threshold_s: float = DEFAULT_LATE_THRESHOLD_S

    def __post_init__(self) -> None:
        if not (self.rps > 0 and math.isfinite(self.rps)):
            raise LoadError(f"rps must be a positive number, got {self.rps:g}", hint="e.g. --rps 100")
        if self.rps > MAX_RPS:
            raise LoadError(
                f"rps {self.rps:g} is over the limit of {MAX_RPS:,.0f}",
                hint="one process sends a few thousand per second; run several for more",
            )
        if not self.duration_s >= 0:
            raise LoadError(f"duration must be zero or more, got {self.duration_s}", hint="e.g. 30s")
        if math.isfinite(self.duration_s) and self.rps * self.duration_s > MAX_REQUESTS:
            raise LoadError(
                f"{self.rps:g} rps for {self.duration_s:g} s is {self.rps * self.duration_s:,.0f} requests, "
                f"over the limit of {MAX_REQUESTS:,} for one run",
                hint="a lower rate or a shorter duration",
            )
        if not (self.timeout_s > 0 and math.isfinite(self.timeout_s)):
            raise LoadError(f"timeout must be a positive number of seconds, got {self.timeout_s}")
        if self.max_connections < 1:
            raise LoadError(f"max_connections must be at least 1, got {self.max_connections}")
        split_url(self.url)  # a bad URL fails here, in the caller's thread


class LoadOptions(TypedDict, total=False):
    """The optional settings of LoadSpec, for LoadGenerator and background_load."""

    headers: Mapping[str, str] | None
    method: str
    body: bytes | None
    timeout_s: float
    max_connections: int
    on_result: Callable[[Result], None] | None
    capture_headers: Sequence[str]
    keep_body: bool
    late_threshold_s: float


class OpenLoopRun:
    """One run of a LoadSpec on the running event loop."""

    def __init__(self, spec: LoadSpec) -> None:
        self.spec = spec
        self.client = HttpClient(spec.url, max_connections=spec.max_connections, timeout_s=spec.timeout_s)
        self.request = self.client.build_request(spec.method, headers=spec.headers, body=spec.body)
        self.recorder = Recorder(spec.capture_headers)
        self._capture = tuple(name.lower() for name in spec.capture_headers)
        self._t0: float | None = None  # loop time of request 0
        self._end: float | None = None  # seconds since t0 when the run finished
        self._stopping = False
        self._wakeup: asyncio.Future[None] | None = None
        self._callback_error: BaseException | None = None

    def stop(self) -> None:
        """Send no more requests; those in flight finish. Call on the run's loop."""
        self._stopping = True
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    def snapshot(self) -> LoadReport:
        """The report so far; safe from any thread."""
        if self._end is not None:
            elapsed = self._end
        elif self._t0 is not None:
            elapsed = time.monotonic() - self._t0  # the default loop clock is time.monotonic
        else:
            elapsed = 0.0
        spec = self.spec
        return self.recorder.snapshot(
            url=spec.url,
            method=self.request.method,
            target_rps=spec.rps,
            planned_duration_s=spec.duration_s,
            duration_s=elapsed,
            connections_opened=self.client.connections_opened,
        )

    async def run(self) -> LoadReport:
        loop = asyncio.get_running_loop()
        rps = self.spec.rps
        duration = self.spec.duration_s
        count = math.ceil(duration * rps - 1e-9) if math.isfinite(duration) else math.inf
        pending: set[asyncio.Task[None]] = set()
        t0 = self._t0 = loop.time()
        i = 0
        try:
            while i < count and not self._stopping:
                # Launch everything due by now: after a slow wake-up, catch up rather than drift.
                due = min(count, int((loop.time() - t0) * rps + 1e-9) + 1)
                while i < due:
                    if len(pending) >= MAX_IN_FLIGHT:
                        self._record(self._overload(i, t0 + i / rps, loop.time()))
                    else:
                        task = loop.create_task(self._one(i, t0 + i / rps))
                        pending.add(task)
                        task.add_done_callback(pending.discard)
                    i += 1
                if i < count and not self._stopping:
                    await self._sleep_until(t0 + i / rps)
            # Every request is bounded by its timeout, so this ends.
            await asyncio.gather(*pending)
        finally:
            for task in pending:
                task.cancel()
            await self.client.aclose()
            self._end = self.recorder.last_done if self.recorder.total else loop.time() - t0
        if self._callback_error is not None:
            raise self._callback_error
        return self.snapshot()

    async def _sleep_until(self, when: float) -> None:
        # Like asyncio.sleep, but stop() can cut it short.
        loop = asyncio.get_running_loop()
        self._wakeup = wakeup = loop.create_future()
        handle = loop.call_at(when, _resolve, wakeup)
        try:
            await wakeup
        finally:
            handle.cancel()
            self._wakeup = None

    async def _one(self, index: int, scheduled: float) -> None:
        t0 = self._t0
        assert t0 is not None
        response: Response | None = None
        error: RequestError | None = None
        try:
            response = await self.client.send(self.request)
            sent_at: float | None = response.sent_at
        except RequestError as exc:
            error, sent_at = exc, exc.sent_at
        done = asyncio.get_running_loop().time()
        if sent_at is None:
            # Never written: late if it spent its whole timeout waiting (pool or connect).
            late = error is not None and error.kind == "timeout"
        else:
            late = sent_at - scheduled > self.spec.late_threshold_s
        if response is not None:
            headers = {name: response.headers[name] for name in self._capture if name in response.headers}
            result = Result(
                index=index,
                status=response.status,
                error=None,
                scheduled_at=scheduled - t0,
                sent_at=None if sent_at is None else sent_at - t0,
                done_at=done - t0,
                late=late,
                headers=headers,
                body=response.body if self.spec.keep_body else None,
            )
        else:
            assert error is not None
            result = Result(
                index=index,
                status=0,
                error=error.kind,
                scheduled_at=scheduled - t0,
                sent_at=None if sent_at is None else sent_at - t0,
                done_at=done - t0,
                late=late,
                error_detail=error.detail,
            )
        self._record(result)

    def _overload(self, index: int, scheduled: float, now: float) -> Result:
        t0 = self._t0
        assert t0 is not None
        detail = f"{MAX_IN_FLIGHT} requests already waiting; not sent"
        return Result(index, 0, "overload", scheduled - t0, None, now - t0, True, error_detail=detail)

    def _record(self, result: Result) -> None:
        self.recorder.add(result)
        if self.spec.on_result is not None:
            try:
                self.spec.on_result(result)
            except Exception as exc:  # a broken callback ends the run; run() re-raises it
                if self._callback_error is None:
                    self._callback_error = exc
                self.stop()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def run_load(spec: LoadSpec, *, stop: asyncio.Event | None = None) -> LoadReport:
    """Run `spec` (open loop) on the running event loop and report.

    `stop`, when set, ends the run early (in-flight requests still finish).
    """
    run = OpenLoopRun(spec)
    if stop is None:
        return await run.run()

    async def watch() -> None:
        await stop.wait()
        run.stop()

    watcher = asyncio.create_task(watch())
    try:
        return await run.run()
    finally:
        watcher.cancel()


def run_load_sync(spec: LoadSpec) -> LoadReport:
    """run_load on a fresh event loop, for code that is not async."""
    return asyncio.run(run_load(spec))


class LoadGenerator:
    """A load run on its own thread and event loop, for tests that work while it runs.

    with background_load(url, rps=100, capture_headers=["x-shiploop-version"]) as load:
        load.wait_until(lambda r: r.total >= 50, timeout_s=10)
        ...
    report = load.report()
    """

    def __init__(self, url: str, rps: float, duration_s: float = math.inf, **options: Unpack[LoadOptions]):
        self.spec = LoadSpec(url, rps, duration_s, **options)
        self._reset()

    @classmethod
    def of(cls, spec: LoadSpec) -> LoadGenerator:
        generator = cls.__new__(cls)
        generator.spec = spec
        generator._reset()
        return generator

    def _reset(self) -> None:
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._run: OpenLoopRun | None = None
        self._final: LoadReport | None = None
        self._error: BaseException | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, timeout_s: float = 5.0) -> LoadGenerator:
        if self._thread is not None:
            raise RuntimeError("this LoadGenerator was already started")
        self._thread = threading.Thread(target=self._main, name="shiploop-loadgen", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise TimeoutError(f"load generator did not start within {timeout_s:g}s")
        if self._error is not None:
            raise self._error
        return self

    def _main(self) -> None:
        try:
            self._final = asyncio.run(self._amain())
        except BaseException as exc:  # handed to the thread that calls stop() or wait()
            self._error = exc
        finally:
            self._ready.set()

    async def _amain(self) -> LoadReport:
        self._loop = asyncio.get_running_loop()
        self._run = OpenLoopRun(self.spec)
        self._ready.set()
        return await self._run.run()

    def stop(self, timeout_s: float | None = None) -> LoadReport:
        """Stop sending, let in-flight requests finish, and return the final report."""
        loop, run = self._loop, self._run
        if loop is not None and run is not None and self.running:
            try:
                loop.call_soon_threadsafe(run.stop)
            except RuntimeError:  # the loop closed meanwhile: the run is over anyway
                pass
        return self.wait(timeout_s)

    def wait(self, timeout_s: float | None = None) -> LoadReport:
        """Wait for the run to end (its duration, or stop()) and return the final report."""
        if self._thread is None:
            raise RuntimeError("this LoadGenerator was not started")
        self._thread.join(self.spec.timeout_s + 5.0 if timeout_s is None else timeout_s)
        if self._thread.is_alive():
            raise TimeoutError("load generator did not finish in time")
        if self._error is not None:
            raise self._error
        assert self._final is not None
        return self._final

    def report(self) -> LoadReport:
        """The final report once ended, otherwise the report so far."""
        if self._final is not None:
            return self._final
        if self._run is None:
            raise RuntimeError("this LoadGenerator was not started")
        return self._run.snapshot()

    def wait_until(self, predicate: Callable[[LoadReport], bool], timeout_s: float, poll_s: float = 0.02) -> LoadReport:
        """Poll the live report until predicate holds; TimeoutError after timeout_s."""
        deadline = time.monotonic() + timeout_s
        while True:
            report = self.report()
            if predicate(report):
                return report
            if self._error is not None:
                raise self._error
            if time.monotonic() >= deadline:
                raise TimeoutError(f"condition not met within {timeout_s:g}s; so far:\n{report.render()}")
            time.sleep(poll_s)

    def __enter__(self) -> LoadGenerator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@contextmanager
def background_load(
    url: str, rps: float, duration_s: float = math.inf, **options: Unpack[LoadOptions]
) -> Iterator[LoadGenerator]:
    """Run load in a background thread for the duration of a with-block."""
    generator = LoadGenerator(url, rps, duration_s, **options)
    generator.start()
    try:
        yield generator
    finally:
        generator.stop()
