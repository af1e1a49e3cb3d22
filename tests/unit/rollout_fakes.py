"""Fakes for the rollout controller's ports: a clock, deployments in memory, traffic that follows the weights.

Everything runs in the test's own event loop with simulated seconds, so a
rollout of minutes is judged in milliseconds.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shiploop.errors import ShiploopError
from shiploop.naming import Track
from shiploop.rollout.controller import RolloutController
from shiploop.rollout.readings import Observation, Pair, Reading, ReadingUnavailable
from shiploop.spec import Alert, RolloutPolicy, ServiceSpec, Webhook
from shiploop.store.db import DeploymentRow, Store

SERVICE = "web"
STABLE = "v1stable"
CANDIDATE = "v2cand"


def fast_policy(**overrides: Any) -> RolloutPolicy:
    """Short steps: the shape of the default policy on a fast clock."""
    base: dict[str, Any] = {
        "steps": [10, 50, 100],
        "min_step": 2.0,
        "max_step": 10.0,
        "min_samples": 50,
        "guardrails": [{"metric": "error_rate", "tolerance": 0.002}],
    }
    return RolloutPolicy.model_validate({**base, **overrides})


class FakeClock:
    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


class FakeDeployments:
    """The control plane as the controller sees it: tracks and weights in memory."""

    def __init__(self, policy: RolloutPolicy, candidate: str = CANDIDATE) -> None:
        self.policy = policy
        self.next_candidate = candidate
        self.rows: dict[str, DeploymentRow] = {STABLE: self._row(STABLE, Track.STABLE, 100)}
        self.header_routes: dict[tuple[str, str], str] = {}
        self.calls: list[tuple[str, Any]] = []

    @staticmethod
    def _row(version: str, track: str, weight: int) -> DeploymentRow:
        return DeploymentRow(SERVICE, version, track, weight, 1, {}, "running", 0.0)

    def service(self, name: str) -> ServiceSpec:
        if name != SERVICE:
            raise ShiploopError(f"no service named {name}")
        return ServiceSpec.model_validate({"name": name, "run": {"command": ["x"]}, "rollout": self.policy})

    def deployments(self, service: str) -> Sequence[DeploymentRow]:
        return list(self.rows.values())

    def deployed_policy(self, service: str, version: str) -> RolloutPolicy:
        return self.policy

    def sample_url(self, service: str) -> str | None:
        return f"http://127.0.0.1:8080/{service}/"

    def weight(self, version: str) -> int:
        return self.rows[version].weight if version in self.rows else 0

    def track(self, version: str) -> str | None:
        return self.rows[version].track if version in self.rows else None

    async def deploy(self, service: str, weight: int, track: str) -> dict[str, Any]:
        self.calls.append(("deploy", track))
        self.rows[self.next_candidate] = self._row(self.next_candidate, track, weight)
        return {"version": self.next_candidate, "track": track, "weight": weight}

    async def set_weights(self, service: str, requested: dict[str, int]) -> dict[str, int]:
        self.calls.append(("weights", dict(requested)))
        for v, w in requested.items():
            self.rows[v].weight = w
        return requested

    async def set_header_route(self, service: str, header: str, value: str, ref: str) -> dict[str, str]:
        self.calls.append(("header-route", (header, value, ref)))
        self.header_routes[(header, value)] = ref
        return {"header": header, "value": value, "version": ref}

    async def remove_header_route(self, service: str, header: str, value: str | None) -> int:
        self.calls.append(("header-route-removed", (header, value)))
        return 1 if self.header_routes.pop((header, value or ""), None) else 0

    def _candidates(self) -> list[str]:
        return [v for v, d in self.rows.items() if d.track in (Track.CANARY, Track.SHADOW)]

    async def promote(self, service: str, reason: str) -> dict[str, Any]:
        self.calls.append(("promote", reason))
        (candidate,) = self._candidates()
        old = next(v for v, d in self.rows.items() if d.track == Track.STABLE)
        del self.rows[old]
        self.rows[candidate] = self._row(candidate, Track.STABLE, 100)
        return {"stable": candidate}

    async def rollback(self, service: str, reason: str) -> dict[str, Any]:
        self.calls.append(("rollback", reason))
        for v in self._candidates():
            del self.rows[v]
        stable = next(v for v, d in self.rows.items() if d.track == Track.STABLE)
        self.rows[stable].weight = 100
        return {"stable": stable}

    def called(self, name: str) -> list[Any]:
        return [arg for n, arg in self.calls if n == name]


@dataclass
class Counter:
    requests: int = 0
    errors: int = 0
    app: dict[str, float] = field(default_factory=dict)


class FakeTraffic:
    """Requests arriving at `rps`, split by the fake deployments' weights; readings are cumulative counters.

    `error_rate[version]` sets how often each version fails; `unavailable` makes
    reads raise ReadingUnavailable; `app_errors` makes them report failed scrapes;
    `split` overrides the candidate's real share (a router not doing what it was told).
    """

    def __init__(self, deployments: FakeDeployments, clock: FakeClock, rps: int = 100, seed: int = 1) -> None:
        self.deployments = deployments
        self.clock = clock
        self.rps = rps
        self.rng = random.Random(seed)
        self.error_rate: dict[str, float] = {}
        self.counters: dict[str, Counter] = {}
        self.unavailable: str | None = None
        self.app_errors: tuple[str, ...] = ()
        self.split: float | None = None
        self.reads = 0

    def counter(self, version: str) -> Counter:
        return self.counters.setdefault(version, Counter())

    def serve(self, seconds: float = 1.0) -> None:
        d = self.deployments
        candidates = [v for v, row in d.rows.items() if row.track in (Track.CANARY, Track.SHADOW)]
        stable = next(v for v, row in d.rows.items() if row.track == Track.STABLE)
        n = int(self.rps * seconds)
        for _ in range(n):
            target = stable
            if candidates:
                cand = candidates[0]
                if d.rows[cand].track == Track.SHADOW or d.header_routes:
                    self._request(cand)  # a mirrored copy, or the users matching the header
                else:
                    share = self.split if self.split is not None else d.weight(cand) / 100
                    if self.rng.random() < share:
                        target = cand
            self._request(target)

    def _request(self, version: str) -> None:
        c = self.counter(version)
        c.requests += 1
        failed = self.rng.random() < self.error_rate.get(version, 0.0)
        c.errors += failed
        c.app["orders_total"] = c.app.get("orders_total", 0.0) + 1
        c.app["orders_failed_total"] = c.app.get("orders_failed_total", 0.0) + failed

    def reset(self, version: str) -> None:
        """The source restarted: its counters start again from zero."""
        self.counters[version] = Counter()

    def update_cluster(self, version: str) -> None:
        """Envoy updated the version's cluster in place (measured on Envoy 1.40): upstream_rq_completed
        carries on, upstream_rq_5xx and the latency histogram start again from zero."""
        self.counter(version).errors = 0

    def reading(self, version: str) -> Reading:
        c = self.counter(version)
        return Reading(self.clock(), c.requests, c.errors, (), dict(c.app))

    async def read(
        self, service: str, candidate: str, baseline: str, policy: RolloutPolicy, fresh_after: float | None = None
    ) -> Observation:
        self.reads += 1
        if self.unavailable:
            raise ReadingUnavailable(self.unavailable)
        pair = Pair(self.reading(candidate), self.reading(baseline))
        if self.app_errors:
            return Observation(Pair(pair.candidate.without_app(), pair.baseline.without_app()), self.app_errors)
        return Observation(pair)


class FakeNotifier:
    def __init__(self) -> None:
        self.webhook_calls: list[tuple[str, dict[str, Any]]] = []
        self.alert_calls: list[tuple[str, str]] = []
        self.failing_webhooks: set[str] = set()  # phases that fail
        self.failing_alerts = False

    async def webhooks(self, hooks: list[Webhook], when: str, payload: dict[str, Any]) -> str | None:
        self.webhook_calls.append((when, payload))
        return f"{when} webhook http://hooks.test/{when} answered 503" if when in self.failing_webhooks else None

    async def alerts(self, alerts: list[Alert], event: str, text: str, payload: dict[str, Any]) -> list[str]:
        self.alert_calls.append((event, text))
        return [f"alert http://alerts.test answered 500 ({event})"] if self.failing_alerts else []


class Harness:
    """A controller wired to fakes, with a store in a temporary directory."""

    def __init__(self, tmp: Path, policy: RolloutPolicy | None = None, store: Store | None = None) -> None:
        self.policy = policy or fast_policy()
        self.clock = FakeClock()
        # Real SQLite, in memory: a file per test cost ~25 ms of set-up on a loaded machine.
        self.store = store or Store(Path(":memory:"))
        self.deployments = FakeDeployments(self.policy)
        self.traffic = FakeTraffic(self.deployments, self.clock)
        self.notifier = FakeNotifier()
        self.controller = self.new_controller()

    def new_controller(self) -> RolloutController:
        """A controller as a new daemon builds one: same store, fresh memory."""
        return RolloutController(
            self.store, self.deployments, self.traffic, self.notifier, clock=self.clock, sleep=self.clock.sleep
        )

    def start(self) -> dict[str, Any]:
        return asyncio.run(self.controller.start(SERVICE))

    def run(self, seconds: int, until: Any = None) -> None:
        """Serve traffic and tick the controller once per simulated second."""

        async def go() -> None:
            for _ in range(seconds):
                self.traffic.serve(1.0)
                self.clock.now += 1.0
                await self.controller.tick()
                if until is not None and until(self.state()):
                    return

        asyncio.run(go())

    def run_to_end(self, limit_s: int = 600) -> str:
        self.run(limit_s, until=lambda s: s not in ("pending", "progressing", "paused"))
        return self.state()

    def record(self) -> Any:
        r = self.controller.latest(SERVICE)
        assert r is not None
        return r

    def state(self) -> str:
        return str(self.record().state)

    def view(self) -> dict[str, Any]:
        view = self.controller.latest_view(SERVICE)
        assert view is not None
        return view

    def events(self, prefix: str = "rollout-") -> list[dict[str, Any]]:
        return [e for e in self.store.events(SERVICE, limit=10_000) if e["kind"].startswith(prefix)]

    def kinds(self) -> list[str]:
        return [e["kind"] for e in self.events()]
