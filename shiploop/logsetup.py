"""How shiploop's long-running processes (daemon, cluster controller, gateway agent) log: to stderr, INFO and up.

httpx and httpcore log every request they make at INFO. The daemon makes several a
second for each service (health probes, the apps' /metrics, Envoy's stats), so their
lines were most of its log: 1 KB a second for one idle service of two replicas, ~85 MB
a day in .shiploop/logs/daemon.log, which nothing rotates. Their warnings still show.
"""

from __future__ import annotations

import logging
import sys

CHATTY_CLIENTS = ("httpx", "httpcore")


def log_to_stderr() -> None:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in CHATTY_CLIENTS:
        logging.getLogger(name).setLevel(logging.WARNING)
