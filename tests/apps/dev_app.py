"""The developer's own process in the remote tests (tests/integration/test_remote.py): python dev_app.py PORT RELEASE.

GET answers "dev app"; POST answers with the body it got; GET .../stream sends
a first chunk, then its last only once the file RELEASE exists (or after 20 s):
a client that sees the first chunk before it creates the file proves nothing
on the way buffered the response.
"""

import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, RELEASE = int(sys.argv[1]), sys.argv[2]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall between them

    def log_message(self, *args):
        pass

    def _send(self, body):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if not self.path.endswith("/stream"):
            return self._send(b"dev app")
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self._chunk(b"first\n")
        deadline = time.monotonic() + 20
        while not os.path.exists(RELEASE) and time.monotonic() < deadline:
            time.sleep(0.01)
        self._chunk(b"last\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def do_POST(self):
        self._send(self.rfile.read(int(self.headers.get("Content-Length", "0"))))


try:
    ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
except KeyboardInterrupt:
    pass
