"""api: the shop's backend. Signups and a checkout, kept in memory.

Reached through the gateway under /api/ (the prefix is rewritten away):
  POST /signups    {"email": ...} -> 201 {"id", "email", "version"}
  GET|POST /checkout               -> 200 {"order", "free_shipping_over", "version"}, or 500 when the bug bites
  GET /healthz, GET /metrics (Prometheus text)

behaviour.json sits beside this file and is read once at start. Editing it
changes the service's content hash, so `shiploop deploy api` makes a new version:
that is how the demo ships "a version with a bug in checkout".
"""

import json
import os
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

VERSION = os.environ.get("SHIPLOOP_VERSION", "dev")
BEHAVIOUR = {"checkout_error_rate": 0.0, "extra_latency_ms": 0, "slow_fraction": 0.0, "free_shipping_over": 50}
BEHAVIOUR.update(json.loads((Path(__file__).parent / "behaviour.json").read_text()))

lock = threading.Lock()
signups: list[str] = []
counters = {"api_requests_total": 0, "shop_checkout_total": 0, "shop_checkout_errors_total": 0}


def count(name: str) -> None:
    with lock:
        counters[name] += 1


def metrics_text() -> str:
    with lock:
        values = dict(counters)
    lines = []
    for name, value in values.items():
        lines += [f"# TYPE {name} counter", f'{name}{{version="{VERSION}"}} {value}']
    return "\n".join(lines) + "\n"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: Envoy reuses its connections to us
    disable_nagle_algorithm = True  # without it each keep-alive response waits ~40 ms for a delayed ACK

    def log_message(self, *args):
        pass  # one line per request would drown the logs under load

    def do_GET(self):
        self.route()

    def do_POST(self):
        self.route()

    def route(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""  # always drain it, or keep-alive breaks
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            return self.reply(200, "ok", "text/plain")
        if path == "/metrics":
            return self.reply(200, metrics_text(), "text/plain; version=0.0.4")
        count("api_requests_total")
        if path == "/signups" and self.command == "POST":
            return self.signup(body)
        if path == "/checkout":
            return self.checkout()
        self.reply(404, {"error": f"no route {self.command} {path}"})

    def signup(self, body):
        try:
            email = str(json.loads(body)["email"]).strip()
        except (ValueError, KeyError, TypeError):
            return self.reply(400, {"error": 'send JSON like {"email": "ana@example.com"}'})
        if "@" not in email:
            return self.reply(400, {"error": f"{email!r} is not an email address"})
        with lock:
            signups.append(email)
            number = len(signups)
        self.reply(201, {"id": number, "email": email, "version": VERSION})

    def checkout(self):
        count("shop_checkout_total")
        if random.random() < BEHAVIOUR["slow_fraction"]:
            time.sleep(BEHAVIOUR["extra_latency_ms"] / 1000)
        if random.random() < BEHAVIOUR["checkout_error_rate"]:
            count("shop_checkout_errors_total")
            return self.reply(500, {"error": "checkout failed", "version": VERSION})
        order = random.randrange(10**6)
        self.reply(200, {"order": order, "free_shipping_over": BEHAVIOUR["free_shipping_over"], "version": VERSION})

    def reply(self, status, payload, content_type="application/json"):
        text = payload if isinstance(payload, str) else json.dumps(payload) + "\n"
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
    server.daemon_threads = True
    server.serve_forever()
