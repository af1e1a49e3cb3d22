"""Image tags by content: the version id, extended with what else goes into the image."""

from __future__ import annotations

import hashlib
import json

EXTRA_LENGTH = 8


def image_tag(version_id: str, dockerfile: str, build_args: dict[str, str]) -> str:
    """`<version>-<8 hex>`: the version names the files; the suffix hashes the Dockerfile and the
    build arguments too (a generated Dockerfile and the args are not in the version's files)."""
    h = hashlib.sha256()
    h.update(version_id.encode() + b"\0")
    h.update(hashlib.sha256(dockerfile.encode()).digest())
    h.update(json.dumps(sorted(build_args.items())).encode())
    return f"{version_id}-{h.hexdigest()[:EXTRA_LENGTH]}"


def image_ref(registry: str, service: str, tag: str) -> str:
    return f"{registry.rstrip('/')}/{service}:{tag}"
