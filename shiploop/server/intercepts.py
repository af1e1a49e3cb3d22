"""Personal routes held by leases: `shiploop intercept` and `shiploop dev`.

A developer's CLI claims a route for the requests that carry one header (or,
with `--all`, every request to a service) to a process on their machine, and
renews its lease every RENEW_S. When the CLI stops renewing (it exited, was
killed with -9, lost its connection), the lease lapses and the sweep, run on
every supervisor tick and at daemon start, takes the route out. One owner per
(service, header match): a second claim is refused unless it takes over, which
is recorded as an event.

A personal route never disturbs a rollout: it has its own Envoy cluster (so
the rollout's per-version counters never see its traffic) and it is matched
before the weighted route (server/routing.py).
"""

from __future__ import annotations

import ipaddress
import secrets
import time
from typing import Any

from shiploop.errors import Conflict, Invalid, NotFound
from shiploop.naming import Track
from shiploop.server.context import PlaneContext
from shiploop.server.routing import PersonalRoute, personal_label
from shiploop.server.specs import spec_from_json
from shiploop.spec import check_header_name, check_header_value
from shiploop.store import InterceptRow

# The route must be gone at most 10 s after its CLI stops renewing. It lapses
# LEASE_S after the last renewal, the sweep runs every supervisor tick (0.5 s)
# and a publish takes ~10 ms (docs/benchmarks.md): at most ~8.6 s. A lease also
# outlives three missed renewals, so a daemon busy for a few seconds drops nothing.
LEASE_S = 8.0
RENEW_S = 2.0
KINDS = ("intercept", "dev")


def describe_match(header: str, value: str) -> str:
    return f"{header}={value}" if header else "every request (--all)"


class Intercepts:
    def __init__(self, ctx: PlaneContext, lease_s: float = LEASE_S) -> None:
        self.ctx = ctx
        self.lease_s = lease_s

    def rows(self, service: str | None = None) -> list[InterceptRow]:
        return self.ctx.store.intercepts(service)

    def view(self, row: InterceptRow) -> dict[str, Any]:
        """An intercept as the API shows it (contract.Intercept): where it points, who holds it, until when."""
        paths: list[str] = []
        stable = self.ctx.find_track(row.service, Track.STABLE)
        if stable is not None:
            for r in spec_from_json(stable.spec).routes:
                paths.extend(p for p in (r.prefix, r.path) if p)
        personal = PersonalRoute(row.id, row.header, row.value, row.host, row.port, row.kind)
        return {
            "id": row.id,
            "service": row.service,
            "header": row.header,
            "value": row.value,
            "target": f"{row.host}:{row.port}",
            "owner": row.owner,
            "pid": row.pid,
            "kind": row.kind,
            "created_at": row.created_at,
            "expires_at": row.expires_at,
            "lease_s": self.lease_s,
            "renew_s": RENEW_S,
            "label": personal_label(row.service, personal),
            "gateway": self.ctx.gateway_url,
            "paths": paths,
        }

    async def claim(
        self,
        service: str,
        header: str,
        value: str,
        host: str,
        port: int,
        owner: str,
        pid: int | None = None,
        kind: str = "intercept",
        takeover: bool = False,
    ) -> InterceptRow:
        """Route the requests of `service` carrying `header: value` (every one when header is "") to host:port."""
        ctx = self.ctx
        ctx.require_service(service)
        if header:
            header, value = check_header_name(header), check_header_value(value)
        elif value:
            raise Invalid("an intercept of every request has no header value", hint="give --header NAME=VALUE or --all")
        if kind not in KINDS:
            raise Invalid(f"unknown intercept kind '{kind}'", hint=f"one of: {', '.join(KINDS)}")
        host = self._check_target(host, port)
        match = describe_match(header, value)
        async with ctx.lock:
            ctx.track(service, Track.STABLE)  # a service that serves: its routes are what gets intercepted
            now = ctx.clock()
            change = ctx.change()
            held = next((i for i in change.intercepts(service) if (i.header, i.value) == (header, value)), None)
            if held is not None and held.expires_at >= now and not takeover:
                until = time.strftime("%H:%M:%S", time.localtime(held.expires_at))
                raise Conflict(
                    f"{service}: {match} is intercepted by {held.owner}{_pid(held)} "
                    f"until {until} unless renewed (lease {self.lease_s:g}s)",
                    hint="see who holds what: shiploop intercepts",
                )
            row = InterceptRow(
                secrets.token_hex(4), service, header, value, host, port, owner, pid, kind, now, now + self.lease_s
            )
            change.add_intercept(row)
            gen = await ctx.commit(change)
            evidence = {"id": row.id, "owner": owner, "pid": pid, "kind": kind, "target": f"{host}:{port}"}
            if held is not None and held.expires_at >= now:
                ctx.event(
                    service,
                    "intercept-takeover",
                    f"{owner} took over {match} from {held.owner}{_pid(held)}",
                    evidence | {"previous": {"id": held.id, "owner": held.owner, "pid": held.pid}},
                )
            ctx.event(service, kind, f"{match} -> {host}:{port} for {owner}", evidence | {"generation": gen})
            return row

    def renew(self, intercept_id: str) -> InterceptRow:
        """Extend a lease; NotFound once it has lapsed, was released or was taken over."""
        ctx = self.ctx
        now = ctx.clock()
        if not ctx.store.renew_intercept(intercept_id, now, now + self.lease_s):
            raise NotFound(
                f"intercept {intercept_id} is gone: it lapsed, was released or was taken over",
                hint="see who holds what: shiploop intercepts",
            )
        return self._row(intercept_id)

    async def retarget(self, intercept_id: str, host: str, port: int) -> InterceptRow:
        """Point an intercept at another port (`shiploop dev` after a restart); returns once Envoy serves it."""
        ctx = self.ctx
        host = self._check_target(host, port)
        async with ctx.lock:
            change = ctx.change()
            if not any(i.id == intercept_id for i in change.intercepts()):
                raise NotFound(f"intercept {intercept_id} is gone", hint="see who holds what: shiploop intercepts")
            change.retarget_intercept(intercept_id, host, port)
            await ctx.commit(change)
        return self._row(intercept_id)

    async def release(self, intercept_id: str) -> InterceptRow:
        ctx = self.ctx
        async with ctx.lock:
            change = ctx.change()
            row = next((i for i in change.intercepts() if i.id == intercept_id), None)
            if row is None:
                raise NotFound(f"intercept {intercept_id} is gone", hint="see who holds what: shiploop intercepts")
            change.remove_intercept(intercept_id)
            await ctx.commit(change)
            ctx.event(
                row.service,
                f"{row.kind}-released",
                f"{describe_match(row.header, row.value)} of {row.owner} released",
                {"id": row.id, "owner": row.owner},
            )
            return row

    async def sweep(self) -> None:
        """Take out the routes whose lease lapsed (a supervisor tick hook).

        Never waits for the lock: a mutation holding it publishes the state it
        built, and the next tick (0.5 s later) removes what lapsed meanwhile."""
        ctx = self.ctx
        now = ctx.clock()
        if ctx.lock.locked() or not any(i.expires_at < now for i in ctx.store.intercepts()):
            return
        async with ctx.lock:
            now = ctx.clock()
            change = ctx.change()
            lapsed = [i for i in change.intercepts() if i.expires_at < now]
            if not lapsed:
                return
            for i in lapsed:
                change.remove_intercept(i.id)
            gen = await ctx.commit(change)
            for i in lapsed:
                self._record_lapse(i, now, gen)

    def sweep_stored(self) -> int:
        """At daemon start, before anything is published: forget the leases that lapsed while it was down."""
        now = self.ctx.clock()
        lapsed = [i for i in self.ctx.store.intercepts() if i.expires_at < now]
        for i in lapsed:
            self.ctx.store.remove_intercept(i.id)
            self._record_lapse(i, now, None)
        return len(lapsed)

    def forget_all(self) -> None:
        """`down`: no personal route outlives the gateway."""
        for i in self.ctx.store.intercepts():
            self.ctx.store.remove_intercept(i.id)

    def _record_lapse(self, i: InterceptRow, now: float, generation: int | None) -> None:
        self.ctx.event(
            i.service,
            f"{i.kind}-lapsed",
            f"{describe_match(i.header, i.value)} of {i.owner}{_pid(i)}: lease lapsed "
            f"{now - i.expires_at:.1f}s ago (not renewed), route removed",
            {"id": i.id, "owner": i.owner, "expired_at": i.expires_at, "removed_at": now, "generation": generation},
        )

    def _row(self, intercept_id: str) -> InterceptRow:
        row = next((i for i in self.ctx.store.intercepts() if i.id == intercept_id), None)
        if row is None:
            raise NotFound(f"intercept {intercept_id} is gone", hint="see who holds what: shiploop intercepts")
        return row

    def _check_target(self, host: str, port: int) -> str:
        try:
            address = ipaddress.ip_address("127.0.0.1" if host == "localhost" else host)
        except ValueError:
            raise Invalid(f"intercept target '{host}' is not an IP address", hint="e.g. 127.0.0.1") from None
        if not 0 < port < 65536:
            raise Invalid(f"intercept port {port} is out of range", hint="a port from 1 to 65535")
        if address.is_loopback and port == self.ctx.port:
            raise Invalid(
                f"port {port} is the gateway's own: the intercept would send requests back to itself",
                hint="give the port your process listens on",
            )
        return str(address)


def _pid(row: InterceptRow) -> str:
    return f" (pid {row.pid})" if row.pid else ""
