"""A tiny HTTP app for tests: answers with its identity, fails or slows on request.

Environment: PORT, SHIPLOOP_SERVICE, SHIPLOOP_VERSION, plus knobs
FAIL_RATE (0..1 share of 500s), SLOW_RATE and SLOW_MS (share of requests
delayed), CRASH_AFTER (exit after N requests), NOT_READY (never healthy),
READY_FILE (not healthy until this file exists), FAIL_FILE (while this file
exists, fail the share of requests written in it: an incident shared by every
version that reads the same path). A request's
x-echo-events (e.g. "signup,purchase=12.50") comes back as Shiploop-Event headers.
"""

import json
import os
import random
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SERVICE = os.environ.get("SHIPLOOP_SERVICE", "echo")
VERSION = os.environ.get("SHIPLOOP_VERSION", "dev")
FAIL_RATE = float(os.environ.get("FAIL_RATE", "0"))
SLOW_RATE = float(os.environ.get("SLOW_RATE", "0"))
SLOW_MS = float(os.environ.get("SLOW_MS", "0"))
CRASH_AFTER = int(os.environ.get("CRASH_AFTER", "0"))
NOT_READY = os.environ.get("NOT_READY") == "1"
READY_FILE = os.environ.get("READY_FILE", "")
FAIL_FILE = os.environ.get("FAIL_FILE", "")


def fail_rate():
    if FAIL_FILE:
        try:
            with open(FAIL_FILE) as f:
                return float(f.read() or "0")
        except (OSError, ValueError):
            pass
    return FAIL_RATE

lock = threading.Lock()
served = {"requests": 0, "errors": 0}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes

    def log_message(self, format, *args):  # noqa: A002 - quiet access log
        pass

    def _send(self, status, body, content_type="application/json"):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-app-version", VERSION)
        # Experiment events as an app reports them: x-echo-events: signup,purchase=12.50
        for event in filter(None, (self.headers.get("x-echo-events") or "").split(",")):
            self.send_header("Shiploop-Event", event.strip())
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/healthz":
            ready = not NOT_READY and (not READY_FILE or os.path.exists(READY_FILE))
            return self._send(200 if ready else 503, "ok", "text/plain")
        if self.path == "/metrics":
            text = (
                "# TYPE app_requests_total counter\n"
                f'app_requests_total{{version="{VERSION}"}} {served["requests"]}\n'
                f'app_errors_total{{version="{VERSION}"}} {served["errors"]}\n'
            )
            return self._send(200, text, "text/plain; version=0.0.4")
        if self.path == "/_served":
            return self._send(200, json.dumps(served))
        self._answer()

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(length)
        self._answer()

    def _answer(self):
        with lock:
            served["requests"] += 1
            n = served["requests"]
        if SLOW_RATE and random.random() < SLOW_RATE:
            time.sleep(SLOW_MS / 1000)
        rate = fail_rate()
        if rate and random.random() < rate:
            with lock:
                served["errors"] += 1
            self._send(500, json.dumps({"error": "injected", "version": VERSION}))
        else:
            self._send(200, json.dumps({"service": SERVICE, "version": VERSION, "path": self.path}))
        if CRASH_AFTER and n >= CRASH_AFTER:
            os._exit(3)


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
    server.daemon_threads = True
    print(f"{SERVICE}@{VERSION} listening on {os.environ['PORT']}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)
