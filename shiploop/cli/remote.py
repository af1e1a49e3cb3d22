"""The CLI against a daemon on another machine: SHIPLOOP_URL, SHIPLOOP_TOKEN (or SHIPLOOP_TOKEN_FILE), SHIPLOOP_CA.

Unset SHIPLOOP_URL: the project's local daemon, as always. `ssl` is imported
only here, and only when a remote daemon is configured: a local `shiploop
status` does not pay for it (bench/cli_latency.py).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shiploop.errors import Invalid, ShiploopError
from shiploop.paths import find_root

URL_HINT = "e.g. export SHIPLOOP_URL=https://shared-host:7443 (the URL the shared host printed at up --listen)"
TOKEN_HINT = "on the shared host: shiploop token create NAME; then export SHIPLOOP_TOKEN=... here"
CA_HINT = "copy here the certificate the shared host printed at up --listen, and: export SHIPLOOP_CA=/path/to/cert.pem"


@dataclass(frozen=True)
class RemoteDaemon:
    url: str
    host: str
    port: int
    token: str
    ca: str | None

    def tls(self) -> Any:
        """An ssl.SSLContext trusting SHIPLOOP_CA (or the system's authorities when unset)."""
        import ssl

        try:
            return ssl.create_default_context(cafile=self.ca)
        except (ssl.SSLError, OSError, ValueError) as e:
            raise Invalid(f"SHIPLOOP_CA={self.ca} is not a PEM certificate ({e})", hint=CA_HINT) from None

    def explain(self, e: Exception) -> ShiploopError:
        """A failed connection as one line with its fix."""
        import ssl

        if isinstance(e, ssl.SSLCertVerificationError):
            return ShiploopError(f"the certificate of {self.url} is not trusted: {e.verify_message}", hint=CA_HINT)
        if isinstance(e, ssl.SSLError):
            return ShiploopError(
                f"TLS with {self.url} failed: {e.reason or e}", hint=f"is {self.url} shiploop's TLS API? {URL_HINT}"
            )
        return ShiploopError(
            f"cannot reach the shiploop daemon at {self.url}: {getattr(e, 'strerror', None) or e}",
            hint=f"is it up there (shiploop up --listen ADDR) and SHIPLOOP_URL right? {URL_HINT}",
        )

    def refused(self) -> ShiploopError:
        return ShiploopError(f"the daemon at {self.url} refused the token (mistyped or revoked)", hint=TOKEN_HINT)

    def public(self, url: str) -> str:
        """A URL the daemon gave for its own host (http://127.0.0.1:PORT), as seen from here."""
        return re.sub(r"^(https?://)(127\.0\.0\.1|localhost|\[::1\])(?=[:/]|$)", rf"\g<1>{self._shown}", url)

    @property
    def _shown(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host


def remote_daemon() -> RemoteDaemon | None:
    """The daemon SHIPLOOP_URL names, or None (the local one); Invalid when the settings are wrong."""
    url = os.environ.get("SHIPLOOP_URL", "").strip()
    if not url:
        return None
    m = re.fullmatch(r"https://(\[[0-9a-fA-F:.]+\]|[^:/\s\[\]]+):(\d{1,5})/?", url)
    if m is None:
        raise Invalid(f"SHIPLOOP_URL={url!r} is not https://HOST:PORT", hint=URL_HINT)
    host, port = m.group(1).strip("[]"), int(m.group(2))
    token = os.environ.get("SHIPLOOP_TOKEN", "").strip()
    token_file = os.environ.get("SHIPLOOP_TOKEN_FILE", "").strip()
    if not token and token_file:
        try:
            token = Path(token_file).expanduser().read_text().strip()
        except OSError as e:
            raise Invalid(f"cannot read SHIPLOOP_TOKEN_FILE={token_file}: {e.strerror}", hint=TOKEN_HINT) from None
    if not token:
        raise Invalid("SHIPLOOP_URL is set but no token: set SHIPLOOP_TOKEN or SHIPLOOP_TOKEN_FILE", hint=TOKEN_HINT)
    if not token.isascii() or not token.isprintable():
        raise Invalid("the token is not printable ASCII text", hint=TOKEN_HINT)
    ca = os.environ.get("SHIPLOOP_CA", "").strip() or None
    if ca is not None and not Path(ca).expanduser().is_file():
        raise Invalid(f"SHIPLOOP_CA={ca} is not a file", hint=CA_HINT)
    return RemoteDaemon(url.rstrip("/"), host, port, token, str(Path(ca).expanduser()) if ca else None)


def project_root() -> Path:
    """The project here; against a remote daemon a project directory is not needed (the current one stands in)."""
    if os.environ.get("SHIPLOOP_URL", "").strip():
        try:
            return find_root(Path.cwd())
        except ShiploopError:
            return Path.cwd()
    return find_root(Path.cwd())
