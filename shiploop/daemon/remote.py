"""A daemon on a shared host: `shiploop up --listen ADDR`.

The API is served again, over TLS, on ADDR (the loopback API stays for the
host's own CLI); the tunnel endpoint (server/tunnel.py) listens beside it on
the next port. Every request there needs a token: the host's own, or a user's
made with `shiploop token create NAME` (only its SHA-256 is stored). A user's
intercepts are owned by the token's name; tokens and `down` stay the host's.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import ipaddress
import json
import re
import secrets
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request

from shiploop.contract import RemoteInfo, Token, TokenRequest
from shiploop.errors import Conflict, Invalid, NotFound
from shiploop.paths import ProjectPaths, private_dir
from shiploop.spec.models import RemoteSpec
from shiploop.store import Store

DEFAULT_API_PORT = 7443
USER_KEY = "shiploop.user"  # the ASGI scope key naming the token's user (absent: the host's own token)
ADMIN_PATHS = ("/v1/tokens", "/v1/down")  # the host's own token only
TOKEN_NAME = re.compile(r"[a-z0-9][a-z0-9._@-]{0,63}")
CERT_DAYS = 825

ASGIApp = Any


@dataclass(frozen=True)
class Listen:
    host: str  # as given: what the certificate names and the URL shows
    bind: str  # the IP address listened on
    port: int  # the API's; the tunnel's is the next one

    @property
    def tunnel_port(self) -> int:
        return self.port + 1

    @property
    def url(self) -> str:
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{shown}:{self.port}"


def parse_listen(text: str) -> Listen:
    """HOST or HOST:PORT (an IPv6 address in brackets); the host may be a name it resolves."""
    hint = "e.g. --listen 10.0.0.5 or --listen shared.example.com:7443"
    m = re.fullmatch(r"\[([0-9a-fA-F:.]+)\](?::(\d+))?|([^:\s\[\]]+)(?::(\d+))?", text.strip())
    if m is None:
        raise Invalid(f"--listen {text!r} is not HOST or HOST:PORT", hint=hint)
    host = m.group(1) or m.group(3)
    port_text = m.group(2) or m.group(4)
    port = int(port_text) if port_text else DEFAULT_API_PORT
    if not 0 < port < 65535:
        raise Invalid(f"--listen port {port} is out of range (the tunnel takes the next one)", hint=hint)
    try:
        bind = str(ipaddress.ip_address(host))
    except ValueError:
        try:
            bind = socket.gethostbyname(host)
        except OSError:
            raise Invalid(f"--listen host {host!r} does not resolve to an address", hint=hint) from None
    return Listen(host, bind, port)


# -- the certificate --------------------------------------------------------------------------------


def certificate(paths: ProjectPaths, spec: RemoteSpec, listen: Listen) -> tuple[Path, Path]:
    """(cert, key): the configured pair, checked, or a self-signed one generated once into .shiploop/remote/."""
    if spec.tls_cert is not None and spec.tls_key is not None:
        cert, key = paths.root / spec.tls_cert, paths.root / spec.tls_key
        for what, path in (("tls_cert", cert), ("tls_key", key)):
            if not path.is_file():
                raise Invalid(f"{path} does not exist", where=f"shiploop.yaml remote.{what}", hint="fix the path")
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
        except (ssl.SSLError, ValueError) as e:
            raise Invalid(
                f"{cert} and {key} are not a PEM certificate and its key ({e})",
                where="shiploop.yaml remote",
                hint="check them with: openssl x509 -noout -text -in " + str(cert),
            ) from None
        return cert, key
    folder = private_dir(paths.state_dir / "remote")
    cert, key = folder / "cert.pem", folder / "key.pem"
    names = {listen.host, listen.bind, "localhost", "127.0.0.1"}
    if not (cert.is_file() and key.is_file() and names <= _names_of(cert)):
        _generate(cert, key, sorted(names))
    return cert, key


def _names_of(cert: Path) -> set[str]:
    from cryptography import x509

    try:
        c = x509.load_pem_x509_certificate(cert.read_bytes())
        san = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return set()
    if c.not_valid_after_utc < datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=30):
        return set()  # about to expire: make a new one
    return {str(n) for n in san.get_values_for_type(x509.DNSName)} | {
        str(a) for a in san.get_values_for_type(x509.IPAddress)
    }


def _generate(cert: Path, key: Path, names: list[str]) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    private = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for n in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            sans.append(x509.DNSName(n))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{names[0]} (shiploop)")])
    now = datetime.datetime.now(datetime.UTC)
    built = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(private.public_key()), critical=False)
        .sign(private, hashes.SHA256())
    )
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key.chmod(0o600)
    cert.write_bytes(built.public_bytes(serialization.Encoding.PEM))


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    return ctx


# -- tokens -----------------------------------------------------------------------------------------


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


class Tokens:
    def __init__(self, store: Store, host_token: str, clock: Any) -> None:
        self.store = store
        self.expected = f"Bearer {host_token}".encode()
        self.clock = clock

    def verify(self, authorization: str) -> tuple[bool, str | None]:
        """(allowed, the user's name or None for the host's own token)."""
        given = authorization.encode("utf-8", "surrogateescape")
        if hmac.compare_digest(given, self.expected):
            return True, None
        scheme, _, token = authorization.partition(" ")
        if scheme != "Bearer" or not token:
            return False, None
        user = self.store.token_owner(digest(token.strip()))
        return user is not None, user

    def create(self, name: str) -> Token:
        if not TOKEN_NAME.fullmatch(name):
            raise Invalid(f"token name {name!r}: use lowercase letters, digits and . _ @ - (up to 64)", hint="e.g. ana")
        token = "slt_" + secrets.token_urlsafe(32)
        now = self.clock()
        if not self.store.add_token(name, digest(token), now):
            raise Conflict(f"{name} already has a token", hint=f"revoke it first: shiploop token revoke {name}")
        return Token(name=name, created_at=now, token=token)

    def list(self) -> list[Token]:
        return [Token(name=n, created_at=t) for n, t in self.store.tokens()]

    def revoke(self, name: str) -> Token:
        row = next((t for t in self.list() if t.name == name), None)
        if row is None or not self.store.remove_token(name):
            raise NotFound(f"no token named {name!r}", hint="see them: shiploop token list")
        return row


class RemoteGate:
    """The TLS API's door: a valid token on every request (reads too), the host's own for tokens and down."""

    def __init__(self, app: ASGIApp, tokens: Tokens) -> None:
        self.app = app
        self.tokens = tokens

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        auth = next((v for k, v in scope.get("headers", []) if k == b"authorization"), b"")
        allowed, user = self.tokens.verify(auth.decode("latin-1"))
        if not allowed:
            return await _answer(send, 401, "Unauthorized", "missing or wrong token")
        if user is not None:
            if scope["path"].startswith(ADMIN_PATHS):
                return await _answer(send, 403, "Invalid", f"{scope['path']} is for the shared host's own token")
            scope[USER_KEY] = user
        await self.app(scope, receive, send)


async def _answer(send: Any, status: int, kind: str, line: str) -> None:
    body = json.dumps({"kind": kind, "error": line}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def caller(request: Request) -> str | None:
    """The token's user of a request through the TLS API; None: the host's own token."""
    user = request.scope.get(USER_KEY)
    return user if isinstance(user, str) else None


def mount_remote(app: FastAPI, tokens: Tokens, tunnel_port: int | None, gateway_port: int, on_revoke: Any) -> None:
    """The token routes (host only: on the loopback API, or the TLS one with the host's token) and /v1/remote."""
    write = app.state.write

    def host_only(request: Request) -> None:
        if caller(request) is not None:
            raise Invalid("managing tokens needs the shared host's own token", hint="run it on the shared host")

    admin = [*write, Depends(host_only)]

    @app.post("/v1/tokens", dependencies=admin, response_model=Token)
    async def create_token(body: TokenRequest) -> Token:
        return tokens.create(body.name)

    @app.get("/v1/tokens", dependencies=admin, response_model=list[Token])
    async def list_tokens() -> list[Token]:
        return tokens.list()

    @app.delete("/v1/tokens/{name}", dependencies=admin, response_model=Token)
    async def revoke_token(name: str) -> Token:
        row = tokens.revoke(name)
        await on_revoke(name)
        return row

    @app.get("/v1/remote", dependencies=write, response_model=RemoteInfo)
    async def remote_info(request: Request) -> RemoteInfo:
        if tunnel_port is None:
            raise NotFound("this daemon serves no tunnel", hint="start it with: shiploop up --listen ADDR")
        return RemoteInfo(tunnel_port=tunnel_port, gateway_port=gateway_port, user=caller(request))
