"""Listening ports: picked free, below the ephemeral range, within SHIPLOOP_PORT_RANGE when set."""

from __future__ import annotations

import random
import socket
from collections import Counter

import pytest

from shiploop import procs
from shiploop.errors import Invalid, Unavailable
from shiploop.procs import claim_port, free_port, listen_port_range, port_free


def test_ports_come_from_the_range_and_skip_a_taken_one(monkeypatch):
    # Not next to a port 0 bound: that is an ephemeral port, and so is the one after it, which an
    # outgoing connection of a parallel test once held ("no free port in ...=38545-38546").
    monkeypatch.setattr(procs, "_PICKED", {})
    block = _bind_block(1, span=2)
    try:
        port = block[0].getsockname()[1]
        monkeypatch.setenv("SHIPLOOP_PORT_RANGE", f"{port}-{port + 1}")
        assert free_port() == port + 1
    finally:
        block[0].close()


def test_a_full_range_is_one_clear_error(monkeypatch):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setenv("SHIPLOOP_PORT_RANGE", f"{port}-{port}")
        with pytest.raises(Unavailable, match="no free port in SHIPLOOP_PORT_RANGE"):
            free_port()


@pytest.mark.parametrize("spec", ["bad", "20000", "2000-1000", "80-90", "60000-70000"])
def test_a_bad_range_is_refused(monkeypatch, spec):
    monkeypatch.setenv("SHIPLOOP_PORT_RANGE", spec)
    with pytest.raises(Invalid, match="SHIPLOOP_PORT_RANGE"):
        listen_port_range()


def test_without_a_range_ports_stay_below_the_ephemeral_range(monkeypatch):
    monkeypatch.delenv("SHIPLOOP_PORT_RANGE", raising=False)
    ports = listen_port_range()
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        ephemeral_start = int(f.read().split()[0])
    assert ports.start >= 1024 and ports.stop <= ephemeral_start


def test_the_port_after_a_bound_block_is_no_likelier_than_any_other(monkeypatch):
    """Two processes that pick before either binds must rarely meet: a sweep from a random
    start took the port just past a block of bound ones about half the time here."""
    block = _bind_block(20, span=40)
    try:
        first = block[0].getsockname()[1]
        monkeypatch.setenv("SHIPLOOP_PORT_RANGE", f"{first}-{first + 39}")
        picks = Counter(_pick_afresh() for _ in range(400))
    finally:
        for s in block:
            s.close()
    assert set(picks) <= set(range(first + 20, first + 40))
    assert picks.most_common(1)[0][1] < 60, picks  # 20 free ports: about 20 picks each


def _pick_afresh() -> int:
    """free_port as a process that picked nothing before would pick."""
    procs._PICKED.clear()
    return free_port()


def test_a_process_never_picks_a_port_twice_nor_one_it_claimed(monkeypatch):
    """A port is free when picked and bound later (a replica's once it starts, the gateway's once
    Envoy does): a second pick in between must not return it."""
    monkeypatch.setattr(procs, "_PICKED", {})
    block = _bind_block(1, span=21)
    try:
        first = block[0].getsockname()[1] + 1
        monkeypatch.setenv("SHIPLOOP_PORT_RANGE", f"{first}-{first + 19}")
        claim_port(first)  # the gateway's, not bound yet
        picks = [free_port() for _ in range(19)]
        assert sorted(picks) == list(range(first + 1, first + 20))
        with pytest.raises(Unavailable, match="no free port"):
            free_port()
    finally:
        for s in block:
            s.close()


def _bind_block(n: int, span: int) -> list[socket.socket]:
    """`n` listening sockets on consecutive ports, with `span - n` free ports after them: in this
    test worker's share of the ports (tests/conftest.py), where no other worker binds."""
    ports = listen_port_range()
    bases = range(ports.start, ports.stop - span, span)
    for base in random.sample(bases, min(50, len(bases))):
        held: list[socket.socket] = []
        try:
            for port in range(base, base + n):
                s = socket.socket()
                held.append(s)
                s.bind(("127.0.0.1", port))
                s.listen()
            if all(port_free(p) for p in range(base + n, base + span)):
                return held
        except OSError:
            pass
        for s in held:
            s.close()
    pytest.skip("no block of free ports found")
