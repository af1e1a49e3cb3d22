"""web: the shop's front page and signup form.

Served by the gateway at / (every path no other service claims):
  GET /          the landing page with a signup form (one of two designs, behaviour.json)
  POST /signup   form field `email`; calls api through the gateway, then thanks you and
                 reports the event to experiments (`Shiploop-Event: signup`)
  GET /healthz, GET /metrics (Prometheus text)

web reaches api through the gateway ($SHOP_GATEWAY), like any other client, so
api's canary weights and header routes apply to these calls too.
"""

import html
import json
import os
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

VERSION = os.environ.get("SHIPLOOP_VERSION", "dev")
GATEWAY = os.environ.get("SHOP_GATEWAY", "http://127.0.0.1:8080").rstrip("/")
BEHAVIOUR = {"headline": "Fresh coffee, roasted this week", "extra_latency_ms": 0}
BEHAVIOUR.update(json.loads((Path(__file__).parent / "behaviour.json").read_text()))

lock = threading.Lock()
counters = {"shop_visits_total": 0, "shop_signups_total": 0, "shop_signup_errors_total": 0}

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>shop</title></head>
<body>
<h1>{headline}</h1>
{content}
<footer><small>web@{version}</small></footer>
</body></html>
"""

# Two designs of the signup form (behaviour.json's "signup_form"); `shiploop experiment`
# measures which one gets more visitors to sign up (examples/experiment.py).
FORMS = {
    "classic": """<section data-design="classic"><p>Sign up and hear about the next roast first.</p>
<form method="post" action="/signup">
  <input type="text" name="name" placeholder="Your name">
  <input type="email" name="email" placeholder="you@example.com" required>
  <button type="submit">Sign up</button>
</form></section>""",
    "one-field": """<section data-design="one-field"><form method="post" action="/signup">
  <input type="email" name="email" placeholder="Your email, and the next roast is yours first" required>
  <button type="submit">Get the next roast</button>
</form></section>""",
}
FORM = FORMS[BEHAVIOUR.get("signup_form", "classic")]


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


def page(content: str) -> str:
    return PAGE.format(headline=html.escape(BEHAVIOUR["headline"]), content=content, version=VERSION)


def record_signup(email: str) -> dict:
    """POST it to api through the gateway; raises OSError (URLError, HTTPError, timeout) on failure."""
    request = urllib.request.Request(
        f"{GATEWAY}/api/signups",
        data=json.dumps({"email": email}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: Envoy reuses its connections to us
    disable_nagle_algorithm = True  # without it each keep-alive response waits ~40 ms for a delayed ACK

    def log_message(self, *args):
        pass  # one line per request would drown the logs under load

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            return self.reply(200, "ok", "text/plain")
        if path == "/metrics":
            return self.reply(200, metrics_text(), "text/plain; version=0.0.4")
        if path != "/":
            return self.reply(404, page("<p>Nothing here. <a href='/'>Back to the shop</a></p>"))
        count("shop_visits_total")
        if BEHAVIOUR["extra_latency_ms"]:
            time.sleep(BEHAVIOUR["extra_latency_ms"] / 1000)
        self.reply(200, page(FORM))

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode(errors="replace") if length else ""
        if self.path.split("?", 1)[0] != "/signup":
            return self.reply(404, page("<p>Nothing here.</p>"))
        email = parse_qs(body).get("email", [""])[0].strip()
        if "@" not in email:
            return self.reply(400, page(f"<p>Please give an email address.</p>{FORM}"))
        try:
            signup = record_signup(email)
        except (OSError, ValueError) as exc:
            count("shop_signup_errors_total")
            # 500, not 502: the gateway retries 502-504 on some routes, and a signup must not repeat.
            return self.reply(500, page(f"<p>Sorry, we could not sign you up ({html.escape(str(exc))}).</p>"))
        count("shop_signups_total")
        # The experiment's event: the gateway logs it for this visitor's unit and strips the header.
        self.events = ["signup"]
        thanks = (
            f"<p>Thank you, {html.escape(email)}! You are signup #{signup['id']}.</p>"
            f"<p><small>recorded by api@{html.escape(str(signup.get('version')))}</small></p>"
        )
        self.reply(200, page(thanks))

    def reply(self, status, text, content_type="text/html; charset=utf-8"):
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for event in getattr(self, "events", ()):
            self.send_header("Shiploop-Event", event)
        self.events = []
        self.end_headers()
        self.wfile.write(data)


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
    server.daemon_threads = True
    server.serve_forever()
