"""A change to desired state, held in memory until Envoy has taken it, then written in one transaction.

The control plane publishes what the store would hold after a change *before*
writing it: Envoy rejecting it, or not confirming it in time, leaves the store
as it was. Each edit is made twice over, to an in-memory copy of the rows that
feed routing (which is what gets published) and as a store operation replayed
by `write_to` once Envoy has accepted. No SQLite transaction stays open across
an await, so writes of other coroutines (events, replica records) never share one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from shiploop.naming import DeploymentState
from shiploop.store import DeploymentRow, ExperimentRow, InterceptRow, Store

StoreOp = Callable[[Store], None]


def void(_: object) -> None:
    return None


class Change:
    def __init__(self, store: Store) -> None:
        self.rows: list[DeploymentRow] = store.deployments()
        self.headers: dict[str, list[tuple[str, str, str]]] = {}
        for service in {d.service for d in self.rows}:
            self.headers[service] = store.header_routes(service)
        self.experiments: dict[str, ExperimentRow] = {e.service: e for e in store.running_experiments()}
        self.intercept_rows: list[InterceptRow] = store.intercepts()
        self._ops: list[StoreOp] = []

    # -- reads of the state after the change -----------------------------------------------

    def deployments(self, service: str | None = None) -> list[DeploymentRow]:
        rows = [d for d in self.rows if service is None or d.service == service]
        return sorted(rows, key=lambda d: (d.service, d.created_at))

    def header_routes(self, service: str) -> list[tuple[str, str, str]]:
        return sorted(self.headers.get(service, []))

    def running_experiment(self, service: str) -> ExperimentRow | None:
        return self.experiments.get(service)

    def intercepts(self, service: str | None = None) -> list[InterceptRow]:
        return [i for i in self.intercept_rows if service is None or i.service == service]

    # -- edits ---------------------------------------------------------------------------------

    def start_experiment(self, row: ExperimentRow, ids: list[int]) -> None:
        """A running experiment from now on; its new id is appended to `ids` once written."""
        self.experiments[row.service] = row
        self._ops.append(
            lambda s: ids.append(
                s.insert_experiment(
                    row.service, row.salt, row.hypothesis, row.spec, row.control, row.treatment, row.started_at
                )
            )
        )

    def upsert(self, row: DeploymentRow) -> None:
        self.rows = [d for d in self.rows if (d.service, d.version) != (row.service, row.version)] + [row]
        self._ops.append(lambda s: s.upsert_deployment(row))

    def set_weights(self, service: str, weights: dict[str, int]) -> None:
        self.rows = [
            replace(d, weight=weights[d.version]) if d.service == service and d.version in weights else d
            for d in self.rows
        ]
        self._ops.append(lambda s: s.set_weights(service, dict(weights)))

    def set_track(
        self, service: str, version: str, track: str, weight: int, state: str = DeploymentState.RUNNING
    ) -> None:
        self.rows = [
            replace(d, track=track, weight=weight, state=state) if (d.service, d.version) == (service, version) else d
            for d in self.rows
        ]
        self._ops.append(lambda s: s.set_track(service, version, track, weight, state))

    def remove_deployment(self, service: str, version: str) -> None:
        self.rows = [d for d in self.rows if (d.service, d.version) != (service, version)]
        self.headers[service] = [h for h in self.headers.get(service, []) if h[2] != version]
        self._ops.append(lambda s: s.remove_deployment(service, version))

    def set_header_route(self, service: str, header: str, value: str, version: str) -> None:
        header = header.lower()
        kept = [h for h in self.headers.get(service, []) if (h[0], h[1]) != (header, value)]
        self.headers[service] = [*kept, (header, value, version)]
        self._ops.append(lambda s: s.set_header_route(service, header, value, version))

    def remove_header_route(self, service: str, header: str, value: str | None) -> int:
        header = header.lower()
        before = self.headers.get(service, [])
        kept = [h for h in before if not (h[0] == header and (value is None or h[1] == value))]
        self.headers[service] = kept
        self._ops.append(lambda s: void(s.remove_header_route(service, header, value)))
        return len(before) - len(kept)

    def add_intercept(self, row: InterceptRow) -> None:
        """A personal route; it replaces any other on the same (service, header, value)."""
        same = (row.service, row.header, row.value)
        self.intercept_rows = [i for i in self.intercept_rows if (i.service, i.header, i.value) != same] + [row]
        self._ops.append(lambda s: s.add_intercept(row))

    def retarget_intercept(self, intercept_id: str, host: str, port: int) -> None:
        self.intercept_rows = [
            replace(i, host=host, port=port) if i.id == intercept_id else i for i in self.intercept_rows
        ]
        self._ops.append(lambda s: s.retarget_intercept(intercept_id, host, port))

    def remove_intercept(self, intercept_id: str) -> None:
        self.intercept_rows = [i for i in self.intercept_rows if i.id != intercept_id]
        self._ops.append(lambda s: void(s.remove_intercept(intercept_id)))

    def put(self, key: str, value: str) -> None:
        """A key/value record that changes with this change (e.g. a service's stable version)."""
        self._ops.append(lambda s: s.put(key, value))

    # -- commit ----------------------------------------------------------------------------------

    def write_to(self, store: Store) -> None:
        with store.transaction():
            for op in self._ops:
                op(store)
