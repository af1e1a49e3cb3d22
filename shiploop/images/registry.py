"""Does a registry already hold a tag? One HEAD on the manifest (registry HTTP API v2).

Plain HTTP for registries on this machine (localhost, 127.0.0.1, ::1), as docker,
podman and buildah treat them as insecure by default too; HTTPS elsewhere.
"""

from __future__ import annotations

import http.client
from dataclasses import dataclass

from shiploop.errors import Invalid, Unavailable

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")


@dataclass(frozen=True)
class Registry:
    host: str  # host[:port]
    prefix: str  # repository path prefix, may be ""

    @classmethod
    def parse(cls, text: str) -> Registry:
        text = text.strip().removeprefix("https://").removeprefix("http://").rstrip("/")
        host, _, prefix = text.partition("/")
        if not host or " " in text:
            raise Invalid(f"invalid registry {text!r}", hint="write it as host[:port][/path], e.g. 127.0.0.1:5000/shop")
        return cls(host, prefix)

    @property
    def name(self) -> str:
        return f"{self.host}/{self.prefix}" if self.prefix else self.host

    @property
    def insecure(self) -> bool:
        return self.host.rsplit(":", 1)[0] in _LOCAL_HOSTS or self.host in _LOCAL_HOSTS

    def repository(self, service: str) -> str:
        return f"{self.prefix}/{service}" if self.prefix else service

    def has_tag(self, service: str, tag: str, timeout_s: float = 3.0) -> bool | None:
        """True/False from the registry; None when it wants credentials (then we cannot tell)."""
        host, _, port = self.host.rpartition(":") if self.host.count(":") == 1 else (self.host, "", "")
        conn_cls = http.client.HTTPConnection if self.insecure else http.client.HTTPSConnection
        conn = conn_cls(host or self.host, int(port) if port else None, timeout=timeout_s)
        path = f"/v2/{self.repository(service)}/manifests/{tag}"
        try:
            conn.request("HEAD", path, headers={"Accept": MANIFEST_TYPES})
            status = conn.getresponse().status
        except (OSError, http.client.HTTPException) as e:
            raise Unavailable(
                f"registry {self.name} did not answer ({type(e).__name__}: {e})",
                hint=f"check that it runs: curl -I http{'' if self.insecure else 's'}://{self.host}/v2/",
            ) from None
        finally:
            conn.close()
        if status == 200:
            return True
        if status == 404:
            return False
        if status in (401, 403):
            return None
        raise Unavailable(
            f"registry {self.name} answered HEAD {path} with {status}",
            hint=f"check it with: curl -I http{'' if self.insecure else 's'}://{self.host}{path}",
        )
