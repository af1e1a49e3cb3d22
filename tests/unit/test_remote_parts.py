"""The remote parts without processes: SHIPLOOP_URL settings, --listen, tokens, and the tunnel's flow control."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from shiploop.cli.remote import remote_daemon
from shiploop.daemon.remote import Tokens, digest, parse_listen
from shiploop.errors import Conflict, Invalid
from shiploop.store import Store
from shiploop.tunnel.mux import MAX_CHUNK, WINDOW, Mux


def test_remote_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SHIPLOOP_URL", raising=False)
    assert remote_daemon() is None
    monkeypatch.setenv("SHIPLOOP_URL", "https://shared:7443")
    monkeypatch.setenv("SHIPLOOP_TOKEN", "slt_x")
    monkeypatch.delenv("SHIPLOOP_CA", raising=False)
    r = remote_daemon()
    assert r is not None and (r.host, r.port, r.token, r.ca) == ("shared", 7443, "slt_x", None)
    assert r.public("http://127.0.0.1:8080") == "http://shared:8080"
    monkeypatch.setenv("SHIPLOOP_URL", "http://shared:7443")
    with pytest.raises(Invalid, match="is not https://HOST:PORT"):
        remote_daemon()
    monkeypatch.setenv("SHIPLOOP_URL", "https://shared:7443")
    monkeypatch.delenv("SHIPLOOP_TOKEN")
    monkeypatch.setenv("SHIPLOOP_TOKEN_FILE", str(tmp_path / "missing"))
    with pytest.raises(Invalid, match="cannot read SHIPLOOP_TOKEN_FILE"):
        remote_daemon()
    (tmp_path / "token").write_text("slt_y\n")
    monkeypatch.setenv("SHIPLOOP_TOKEN_FILE", str(tmp_path / "token"))
    monkeypatch.setenv("SHIPLOOP_CA", str(tmp_path / "nope.pem"))
    with pytest.raises(Invalid, match="SHIPLOOP_CA=.* is not a file"):
        remote_daemon()


def test_listen_addresses() -> None:
    assert parse_listen("10.0.0.5").port == 7443
    a = parse_listen("10.0.0.5:9000")
    assert (a.bind, a.port, a.tunnel_port, a.url) == ("10.0.0.5", 9000, 9001, "https://10.0.0.5:9000")
    assert parse_listen("[::1]:9000").url == "https://[::1]:9000"
    assert parse_listen("localhost").bind == "127.0.0.1"
    for bad in ("10.0.0.5:99999", "a b", "no-such-host.invalid"):
        with pytest.raises(Invalid):
            parse_listen(bad)


def test_tokens_keep_only_a_hash(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    tokens = Tokens(store, "host-secret", lambda: 1.0)
    made = tokens.create("ana")
    assert made.token and made.token.startswith("slt_")
    assert [tuple(r) for r in store.db.execute("SELECT * FROM tokens")] == [("ana", digest(made.token), 1.0)]
    assert tokens.verify(f"Bearer {made.token}") == (True, "ana")
    assert tokens.verify("Bearer host-secret") == (True, None)
    assert tokens.verify("Bearer wrong") == (False, None)
    with pytest.raises(Conflict):
        tokens.create("ana")
    with pytest.raises(Invalid):
        tokens.create("Ana Smith")
    tokens.revoke("ana")
    assert tokens.verify(f"Bearer {made.token}") == (False, None)


def test_a_slow_reader_holds_at_most_a_window_per_stream() -> None:
    """8 MB into a stream whose far end reads nothing: the far end queues at most WINDOW (+ a chunk)."""

    async def scenario() -> None:
        a_sock, b_sock = socket.socketpair()
        ar, aw = await asyncio.open_connection(sock=a_sock)
        br, bw = await asyncio.open_connection(sock=b_sock)
        received = asyncio.Event()
        far: list[asyncio.StreamReader] = []

        async def connect(key: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            mine, theirs = socket.socketpair()
            theirs.setblocking(False)
            reader, writer = await asyncio.open_connection(sock=mine)
            far.append(reader)  # nobody reads `theirs` until the end: the slow developer process
            far_sock.append(theirs)
            received.set()
            return reader, writer

        far_sock: list[socket.socket] = []
        host, dev = Mux(ar, aw), Mux(br, bw, connect)
        tasks = [asyncio.create_task(host.run()), asyncio.create_task(dev.run())]
        envoy, local = socket.socketpair()
        lr, lw = await asyncio.open_connection(sock=local)
        await host.open("1", lr, lw)
        body = b"x" * (8 << 20)  # more than the sockets on the way hold: the window must hold it back
        envoy.setblocking(False)
        loop = asyncio.get_running_loop()
        sending = asyncio.create_task(loop.sock_sendall(envoy, body))
        await asyncio.wait_for(received.wait(), 5)
        await asyncio.sleep(0.5)
        stream = next(iter(dev.streams.values()))
        queued = sum(len(c) for c in stream.inbox._queue if c)  # type: ignore[attr-defined]
        assert queued <= WINDOW + MAX_CHUNK
        assert not sending.done()  # the sender is held back, not buffered whole
        got = b""
        while len(got) < len(body):
            got += await loop.sock_recv(far_sock[0], 1 << 16)
        assert got == body
        await sending
        host.close()
        dev.close()
        for t in tasks:
            t.cancel()
        envoy.close()

    asyncio.run(scenario())


async def _ended_tunnel() -> Mux:
    """The shared host's end of a tunnel whose developer CLI is gone (killed: its socket closed)."""
    mine, theirs = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=mine)
    host = Mux(reader, writer)
    running = asyncio.create_task(host.run())
    theirs.close()
    await asyncio.wait_for(running, 2)
    return host


async def _envoy_sees_the_connection_closed(envoy: socket.socket) -> None:
    reader, writer = await asyncio.open_connection(sock=envoy)
    assert await asyncio.wait_for(reader.read(1), 2) == b""  # EOF: Envoy answers 503, it does not wait 15 s
    writer.close()


def test_a_connection_to_an_ended_tunnel_is_closed_at_once() -> None:
    """In a full run (4 workers), a request sent just as a developer's CLI was killed hung for 10 s:
    the stream of Envoy's new connection was opened on the dead tunnel, and nothing closed it."""

    async def scenario() -> None:
        host = await _ended_tunnel()
        envoy, local = socket.socketpair()
        reader, writer = await asyncio.open_connection(sock=local)
        await host.open("1", reader, writer)
        await _envoy_sees_the_connection_closed(envoy)

    asyncio.run(scenario())


def test_a_tunnel_ending_while_a_stream_opens_closes_its_connection() -> None:
    async def scenario() -> None:
        mine, theirs = socket.socketpair()
        tunnel_reader, tunnel_writer = await asyncio.open_connection(sock=mine)
        host = Mux(tunnel_reader, tunnel_writer)
        gate = asyncio.Event()
        send = host.send

        async def held_send(kind: int, sid: int, payload: bytes = b"") -> None:
            await gate.wait()  # OPEN is on its way when the tunnel ends
            await send(kind, sid, payload)

        host.send = held_send  # type: ignore[method-assign]
        envoy, local = socket.socketpair()
        reader, writer = await asyncio.open_connection(sock=local)
        opening = asyncio.create_task(host.open("1", reader, writer))
        deadline = asyncio.get_running_loop().time() + 2
        while not host.streams and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.001)
        assert host.streams, "open() never registered its stream"
        host.close()
        gate.set()
        await asyncio.wait_for(opening, 2)
        await _envoy_sees_the_connection_closed(envoy)
        theirs.close()

    asyncio.run(scenario())


def test_the_certificate_is_configured_whole_or_generated_once(tmp_path: Path) -> None:
    from shiploop.daemon.remote import _names_of, certificate
    from shiploop.errors import ShiploopError
    from shiploop.paths import ProjectPaths
    from shiploop.spec import load_project
    from shiploop.spec.models import RemoteSpec

    (tmp_path / "shiploop.yaml").write_text("name: p\nremote: {tls_cert: host.pem}\n")
    with pytest.raises(ShiploopError, match="give both tls_cert and tls_key"):
        load_project(tmp_path)
    paths = ProjectPaths(tmp_path)
    with pytest.raises(Invalid, match="does not exist"):
        certificate(paths, RemoteSpec(tls_cert="host.pem", tls_key="host.key"), parse_listen("10.1.2.3"))
    cert, key = certificate(paths, RemoteSpec(), parse_listen("10.1.2.3"))
    assert _names_of(cert) == {"10.1.2.3", "localhost", "127.0.0.1"}
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    before = cert.read_bytes()
    assert certificate(paths, RemoteSpec(), parse_listen("10.1.2.3"))[0].read_bytes() == before  # kept
    certificate(paths, RemoteSpec(), parse_listen("10.9.9.9"))
    assert "10.9.9.9" in _names_of(cert)  # another address: a new one that names it
    assert certificate(paths, RemoteSpec(tls_cert=str(cert), tls_key=str(key)), parse_listen("10.9.9.9")) == (cert, key)
