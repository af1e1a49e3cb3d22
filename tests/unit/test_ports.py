"""Listening ports: picked free, below the ephemeral range, within SHIPLOOP_PORT_RANGE when set."""

from __future__ import annotations

import socket

import pytest

from shiploop.errors import Invalid, Unavailable
from shiploop.procs import free_port, listen_port_range


def test_ports_come_from_the_range_and_skip_a_taken_one(monkeypatch):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        taken.listen()
        monkeypatch.setenv("SHIPLOOP_PORT_RANGE", f"{port}-{port + 1}")
        assert free_port() == port + 1


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
