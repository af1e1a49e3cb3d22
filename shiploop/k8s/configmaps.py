"""The controller's one way of writing to the cluster: change a ConfigMap's data, optimistically.

A change is a function of the data read. It is written with a replace that
carries the resourceVersion read, so a write that raced another writer (the
API server answers 409 Conflict) reads again and applies the same change to
what is there now, never overwriting what the other wrote. lightkube, the
client, is used as is; nothing here knows about rollouts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shiploop.errors import Conflict, NotFound, Unavailable

CONFLICT = 409
NOT_FOUND = 404
ATTEMPTS = 8
# Its own name in managedFields: `deploy` applies (server-side, manager `shiploop`) the same ConfigMaps.
FIELD_MANAGER = "shiploop-controller"

Data = dict[str, str]


class ConfigMaps:
    def __init__(self, client: Any, namespace: str) -> None:
        self.client = client
        self.namespace = namespace
        self.conflicts = 0  # 409s met (and retried): for the tests and the log

    def _where(self, name: str) -> str:
        return f"ConfigMap {self.namespace}/{name}"

    def _get(self, name: str) -> Any:
        from httpx2 import TransportError
        from lightkube import ApiError
        from lightkube.resources.core_v1 import ConfigMap

        try:
            return self.client.get(ConfigMap, name, namespace=self.namespace)
        except ApiError as e:
            if e.status.code == NOT_FOUND:
                raise NotFound(
                    f"{self._where(name)} does not exist",
                    hint="shiploop deploy --target kubernetes",  # it renders and applies it
                ) from None
            raise Unavailable(f"cannot read {self._where(name)}: {e.status.code} {e.status.message}") from None
        except TransportError as e:
            raise Unavailable(f"cannot reach the API server to read {self._where(name)}: {e}") from None

    def read(self, name: str) -> Data:
        return dict(self._get(name).data or {})

    def change(self, name: str, change: Callable[[Data], Data]) -> Data:
        """Apply `change` to the data and write it; on 409 read again and apply it again. The data written."""
        from httpx2 import TransportError
        from lightkube import ApiError

        for _ in range(ATTEMPTS):
            cm = self._get(name)
            new = change(dict(cm.data or {}))
            if new == (cm.data or {}):
                return new
            cm.data = new
            try:
                # Carries the resourceVersion read: a write that raced another is refused with 409.
                self.client.replace(cm, namespace=self.namespace, field_manager=FIELD_MANAGER)
                return new
            except ApiError as e:
                if e.status.code == CONFLICT:
                    self.conflicts += 1
                    continue
                raise Unavailable(
                    f"cannot write {self._where(name)}: {e.status.code} {e.status.message}",
                    hint="the controller's Role allows get and update on it: shiploop render --target kubernetes",
                ) from None
            except TransportError as e:
                raise Unavailable(f"cannot reach the API server to write {self._where(name)}: {e}") from None
        raise Conflict(f"{self._where(name)} kept changing under {ATTEMPTS} writes in a row; nothing written")
