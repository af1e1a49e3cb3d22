"""HTTP clients for shiploop's own processes on this machine: replicas' health and /metrics,
Envoy's admin socket.

Plain http on 127.0.0.1 or a unix socket needs no CA bundle (loading one costs ~50 ms of
CPU a client) and must take no proxy from the environment: an HTTP_PROXY without NO_PROXY
would send requests for our own replicas to the proxy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

LOOPBACK_OPTIONS: dict[str, Any] = {"verify": False, "trust_env": False}


def loopback_client(**kwargs: Any) -> httpx.AsyncClient:
    """An httpx.AsyncClient for loopback (a given `transport` needs `verify=False` of its own)."""
    import httpx

    return httpx.AsyncClient(**LOOPBACK_OPTIONS, **kwargs)
