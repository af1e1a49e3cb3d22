"""`shiploop init`: a small project that runs as it is."""

from __future__ import annotations

from pathlib import Path

from shiploop.errors import ShiploopError

PROJECT_YAML = """\
name: {name}
gateway: {{port: 8080}}
"""

SERVICE_YAML = """\
name: hello
run:
  command: ["python", "app.py"]   # started with $PORT, $SHIPLOOP_SERVICE, $SHIPLOOP_VERSION set
  env: {GREETING: hello}
health: {path: /healthz, timeout: 2s}
replicas: 2
routes:
  - prefix: /hello/
    rewrite: /
    timeout: 5s
    retries: {attempts: 2, on: [gateway-error, connect-failure]}
  - path: /hello                  # without the slash too; the app answers any path
    timeout: 5s
"""

APP_PY = '''\
"""hello: a minimal service. Edit the greeting, then `shiploop deploy hello --weight 20`."""

import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = os.environ.get("SHIPLOOP_VERSION", "dev")
GREETING = os.environ.get("GREETING", "hello")
visits = 0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def do_GET(self):
        global visits
        if self.path == "/healthz":
            body = "ok"
        elif self.path == "/metrics":
            body = f'# TYPE hello_visits_total counter\\nhello_visits_total{{version="{VERSION}"}} {visits}\\n'
        else:
            visits += 1
            body = f"{GREETING} from {VERSION}\\n"
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
'''


def write_starter(directory: Path) -> str:
    if (directory / "shiploop.yaml").exists():
        raise ShiploopError(
            f"{directory / 'shiploop.yaml'} already exists", hint="init writes a new project; pick an empty directory"
        )
    service = directory / "hello"
    if service.exists():
        raise ShiploopError(f"{service} already exists", hint="init writes a new project; pick an empty directory")
    service.mkdir(parents=True)
    name = "".join(c if c.isalnum() else "-" for c in directory.resolve().name.lower()).strip("-") or "app"
    (directory / "shiploop.yaml").write_text(PROJECT_YAML.format(name=name))
    (service / "service.yaml").write_text(SERVICE_YAML)
    (service / "app.py").write_text(APP_PY)
    return "hello"
