"""Open-loop HTTP load generation: constant arrival rate, honest latency.

report = run_load_sync(LoadSpec("http://127.0.0.1:8080/", rps=200, duration_s=10))
print(report.render())

with background_load(url, rps=100, capture_headers=["x-shiploop-version"]) as load:
    load.wait_until(lambda r: r.total >= 100, timeout_s=10)
assert load.report().failed == 0
"""

from shiploop.loadgen.client import HttpClient, RequestError
from shiploop.loadgen.errors import LoadError
from shiploop.loadgen.http1 import Request, Response
from shiploop.loadgen.report import Latency, LoadReport, Result
from shiploop.loadgen.runner import (
    MAX_IN_FLIGHT,
    MAX_REQUESTS,
    MAX_RPS,
    LoadGenerator,
    LoadOptions,
    LoadSpec,
    background_load,
    run_load,
    run_load_sync,
)

__all__ = [
    "MAX_IN_FLIGHT",
    "MAX_REQUESTS",
    "MAX_RPS",
    "HttpClient",
    "Latency",
    "LoadError",
    "LoadGenerator",
    "LoadOptions",
    "LoadReport",
    "LoadSpec",
    "Request",
    "RequestError",
    "Response",
    "Result",
    "background_load",
    "run_load",
    "run_load_sync",
]
