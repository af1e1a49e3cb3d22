"""HTTP from the tests to the servers they start: plain http, on loopback (or a test namespace's veth).

httpx's module functions (`httpx.get`, ...) and a bare `httpx.Client()` load the CA bundle
and read proxy settings from the environment for every client: 55 ms of CPU a call, measured,
against 3.5 ms without. Tests poll the daemon while they wait, so each wait kept a core busy
on a suite that is CPU-bound. Plain http to a test's own server needs neither. Each call
still builds a client of its own, as httpx's functions do: no cookies or connections kept.
"""

from __future__ import annotations

from typing import Any

import httpx

from shiploop.loopback import LOOPBACK_OPTIONS as _LOOPBACK


def request(method: str, url: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, url, **_LOOPBACK, **kwargs)


def get(url: str, **kwargs: Any) -> httpx.Response:
    return request("GET", url, **kwargs)


def post(url: str, **kwargs: Any) -> httpx.Response:
    return request("POST", url, **kwargs)


def put(url: str, **kwargs: Any) -> httpx.Response:
    return request("PUT", url, **kwargs)


def delete(url: str, **kwargs: Any) -> httpx.Response:
    return request("DELETE", url, **kwargs)


def client(**kwargs: Any) -> httpx.Client:
    """An httpx.Client for loopback (keeps its cookies and connections, as any Client)."""
    return httpx.Client(**_LOOPBACK, **kwargs)
