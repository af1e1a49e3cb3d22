"""The daemon API's contract: every request and response body as a pydantic model.

The daemon uses these as FastAPI `response_model`s, so the OpenAPI document it
serves (`/openapi.json`) is the API's reference; the CLI parses every answer
with the same models. A bottom-layer module (it imports only pydantic), so the
CLI gets the contract without FastAPI or the control plane.

Rollout bodies allow extra fields: the rollout judge adds evidence as it
learns to explain itself, and the CLI's view shows what it knows of.
Fields a server part does not fill yet are optional with a default.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# defer_build: a model's validator is built when first used, not at import. The CLI
# uses two or three models per command; building all of them at import cost
# ~50 ms of every `shiploop status`.


class Body(BaseModel):
    # Ignore fields this client does not know (an older CLI against a newer daemon).
    model_config = ConfigDict(extra="ignore", defer_build=True)


class Open(BaseModel):
    """A body whose producer may add fields: keep them, for --json and newer views."""

    model_config = ConfigDict(extra="allow", defer_build=True)


# -- errors ---------------------------------------------------------------------------------------


class ErrorBody(Body):
    """Every 4xx/5xx answer: the kind (an errors.py class name, `Unauthorized` or `Internal`) and one line."""

    kind: str
    error: str


# -- requests -------------------------------------------------------------------------------------


class DeployRequest(Body):
    weight: int = Field(0, ge=0, le=100, description="percent of traffic for the new version")
    track: Literal["canary", "shadow"] = "canary"


class WeightsRequest(Body):
    weights: dict[str, int] = Field(description="VERSION (id, prefix or track) -> percent")


class HeaderRouteRequest(Body):
    header: str = Field(min_length=1)
    value: str
    version: str = Field(min_length=1)


class InterceptRequest(Body):
    """Claim a personal route: `header: value` (or, with `all`, every request) of a service to host:port."""

    header: str = Field("", description="empty with all=true")
    value: str = ""
    all: bool = False
    host: str = "127.0.0.1"
    port: int = Field(ge=1, le=65535)
    owner: str = Field(min_length=1, max_length=200, description="who holds it, e.g. ana@laptop")
    pid: int | None = None
    kind: Literal["intercept", "dev"] = "intercept"
    takeover: bool = Field(False, description="take it from its current owner (recorded as an event)")
    tunnel: str | None = Field(
        None, description="SESSION:KEY: send the requests through this CLI's tunnel session (a remote daemon)"
    )


class TokenRequest(Body):
    name: str = Field(min_length=1, max_length=64)


class Token(Body):
    """A user's token of a shared host; `token` only in the answer that created it."""

    name: str
    created_at: float
    token: str | None = None


class RemoteInfo(Body):
    """Where a shared host's tunnel endpoint listens (`shiploop up --listen`)."""

    tunnel_port: int
    gateway_port: int
    user: str | None = None  # the caller's token name; None: the host's own token


class InterceptTarget(Body):
    host: str = "127.0.0.1"
    port: int = Field(ge=1, le=65535)


# -- reads ----------------------------------------------------------------------------------------


class Health(Body):
    ok: bool
    project: str
    gateway: str


class Traffic(Body):
    """A version's live traffic over the last `window_s` seconds, from Envoy's counters."""

    rps: float
    error_rate: float | None = None  # None: no request in the window
    p95_ms: float | None = None
    window_s: float
    source_errors: list[str] = Field(default_factory=list)


class VersionStatus(Body):
    id: str
    track: str
    weight: int
    ready: int
    replicas: int
    state: str
    traffic: Traffic | None = None
    # Crash-loop visibility; filled once the runtime reports them.
    restarts: int | None = None
    last_exit_code: int | None = None
    last_log_line: str | None = None


class HeaderRoute(Body):
    header: str
    value: str
    version: str


class Intercept(Body):
    """A personal route held by a lease; it is removed once `expires_at` passes unrenewed."""

    id: str
    service: str
    header: str  # "" for every request (--all)
    value: str
    target: str  # host:port
    owner: str
    pid: int | None = None
    kind: str = "intercept"
    created_at: float
    expires_at: float
    lease_s: float
    renew_s: float
    label: str = ""  # the x-shiploop-version the gateway answers with for it
    gateway: str = ""
    paths: list[str] = Field(default_factory=list)  # where the service's routes are, e.g. /api/


class ArmCounts(Open):
    requests: int = 0
    errors: int = 0


class GuardrailEvidence(Open):
    name: str = ""
    candidate_rate: float | None = None
    baseline_rate: float | None = None
    estimate: float | None = None
    upper_bound: float | None = None
    tolerance: float | None = None
    harmful: bool = False
    noninferior: bool = False
    detail: str | None = None


class StepEvidence(Open):
    """The rollout's latest evaluation: counts since it began, each guardrail, limits, source errors."""

    candidate: ArmCounts = Field(default_factory=ArmCounts)
    baseline: ArmCounts = Field(default_factory=ArmCounts)
    guardrails: list[GuardrailEvidence] = Field(default_factory=list)
    limits: list[Any] = Field(default_factory=list)  # breaches, as the judge words them
    source_errors: list[str] = Field(default_factory=list)
    reason: str | None = None


class Rollout(Open):
    """A rollout as `rollout status` shows it. The judge's view adds its progress and guardrails (kept as extras)."""

    id: int
    service: str
    candidate: str
    baseline: str
    state: str
    step: int
    steps: list[int]
    strategy: str
    weight: int
    started_at: float
    updated_at: float
    reason: str | None = None
    last: StepEvidence | None = None
    holding: Any = None
    summary: str | None = None  # where it stands, in a sentence
    next: list[str] = Field(default_factory=list)  # the commands that move it on


class PlannedStep(Open):
    weight: int
    expected_s: float  # min_step, or the time to min_samples candidate requests if longer
    reaches_min_samples: bool  # within max_step


class RolloutPlan(Open):
    """A rollout policy at the measured traffic: time per step, the smallest regression it catches, warnings."""

    service: str
    strategy: str
    rps: float
    base_rate: float
    steps: list[PlannedStep]
    total_s: float
    smallest_regression: float | None = None
    power: float
    warnings: list[str] = Field(default_factory=list)


class ExperimentBrief(Body):
    """The experiment running on a service, as `status` shows it."""

    id: int
    state: str
    hypothesis: str
    treatment: str  # the candidate's version


class ServiceStatus(Body):
    name: str
    versions: list[VersionStatus]
    header_routes: list[HeaderRoute] = Field(default_factory=list)
    intercepts: list[Intercept] = Field(default_factory=list)
    routes: list[str] = Field(default_factory=list)
    rollout: Rollout | None = None
    experiment: ExperimentBrief | None = None


class EnvoyHealth(Open):
    """The gateway process as the supervisor sees it."""

    restarts: int = 0


class Status(Body):
    project: str
    gateway: str
    generation: int
    services: list[ServiceStatus]
    api: str | None = None  # the daemon's own URL
    dashboard: str | None = None  # the web dashboard: / on the API
    prometheus: str | None = None  # the Prometheus `up --prometheus` runs, or None
    envoy_admin: str | None = None  # where Envoy's admin interface listens
    state_dir: str | None = None
    logs_dir: str | None = None
    degraded: list[str] = Field(default_factory=list)  # e.g. "state store not writable"
    envoy: EnvoyHealth | None = None


class VersionInfo(Body):
    id: str
    created_at: float
    track: str | None = None
    weight: int | None = None


class LogFiles(Body):
    files: list[str]


class Event(Body):
    id: int
    ts: float
    service: str | None = None
    kind: str
    message: str
    evidence: dict[str, Any] | None = None


# -- mutations ------------------------------------------------------------------------------------


class Deployed(Body):
    service: str
    version: str
    track: str
    weight: int
    created: bool


class Weights(Body):
    """The weights Envoy now serves, version id -> percent."""

    weights: dict[str, int]


class HeaderRemoved(Body):
    removed: int


class Promoted(Body):
    service: str
    stable: str
    retired: str


class RolledBack(Body):
    service: str
    stable: str
    stopped: list[str]


class Ok(Body):
    ok: bool = True


# -- experiments ------------------------------------------------------------------------------------


def _no_interval() -> list[float | None]:
    return [None, None]


class ExperimentVariant(Open):
    version: str
    track: str
    units: int
    events: int
    value: float | None = None  # rate (conversion) or mean per unit; None before any unit


class ExperimentLift(Open):
    absolute: float | None = None
    relative: float | None = None
    interval: list[float | None] = Field(default_factory=lambda: _no_interval())  # always-valid 95%


class Experiment(Open):
    """`experiment status`: the issue's fields first; the daemon adds more (kept as extras)."""

    state: str  # running | held | shipped | stopped | inconclusive | discarded | ended
    hypothesis: str
    variants: list[ExperimentVariant]
    lift: ExperimentLift
    srm_p: float | None = None
    guardrails: list[dict[str, Any]] = Field(default_factory=list)
    decision: str
    reason: str
    id: int
    service: str


class ExperimentSummary(Open):
    """One line of `experiment history`."""

    id: int
    hypothesis: str
    state: str
    control: str
    treatment: str
    started_at: float
    ended_at: float | None = None
    decision: str | None = None
    reason: str | None = None


class ExperimentPlan(Open):
    service: str
    hypothesis: str
    baseline: float
    minimum_detectable_effect: float
    units_per_second: float
    allocation: float
    fixed_units: int
    fixed_seconds: float | None = None
    sequential_units: int
    sequential_seconds: float | None = None
    max_duration_s: float
    sources: dict[str, str] = Field(default_factory=dict)


class ExperimentStop(Body):
    outcome: Literal["ship", "discard"]
