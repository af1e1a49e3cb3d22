"""The rollout policy of a service: steps, analysis settings, guardrails, hooks."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, field_validator, model_validator

from shiploop.spec.base import SpecModel, check_choice, did_you_mean, scalar_to_str
from shiploop.spec.durations import DURATION_HINT, PositiveDuration, parse_duration
from shiploop.spec.issues import spec_issue

ALERT_EVENTS = ("rollback", "promoted", "held")
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_APP_RATIO = re.compile(rf"app:({_METRIC_NAME.pattern})/({_METRIC_NAME.pattern})")
_METRIC_HINT = "use error_rate, latency, or app:NUMERATOR/DENOMINATOR, e.g. app:checkout_errors_total/checkout_total"


def metric_kind(metric: str) -> str:
    """ "error_rate", "latency" or "app_ratio"; raises a spec issue otherwise."""
    if metric in ("error_rate", "latency"):
        return metric
    if _APP_RATIO.fullmatch(metric):
        return "app_ratio"
    if metric.startswith("app:"):
        raise spec_issue(f"invalid app metric {metric!r}", hint=_METRIC_HINT)
    raise spec_issue(f"unknown metric {metric!r}", hint=did_you_mean(metric, ["error_rate", "latency"]) or _METRIC_HINT)


def _check_metric(metric: str) -> str:
    metric_kind(metric)
    return metric


def _check_quantile(kind: str, quantile: float | None) -> None:
    if kind == "latency":
        if quantile is None:
            raise spec_issue("a latency metric needs a quantile", hint="add quantile: 0.95", field="quantile")
        if not 0 < quantile < 1:
            raise spec_issue(
                f"quantile must be between 0 and 1 (exclusive), got {quantile}",
                hint="e.g. 0.95 for p95",
                field="quantile",
            )
    elif quantile is not None:
        raise spec_issue("quantile only applies to the latency metric", hint="remove quantile", field="quantile")


Metric = Annotated[str, AfterValidator(_check_metric)]


class _MetricModel(SpecModel):
    metric: Metric
    """error_rate, latency, or app:NUMERATOR/DENOMINATOR (counters scraped from the replicas' /metrics)."""
    quantile: float | None = None
    """For latency only: the baseline quantile that defines a slow request, e.g. 0.95."""

    @property
    def kind(self) -> str:
        return metric_kind(self.metric)

    @property
    def numerator(self) -> str | None:
        match = _APP_RATIO.fullmatch(self.metric)
        return match.group(1) if match else None

    @property
    def denominator(self) -> str | None:
        match = _APP_RATIO.fullmatch(self.metric)
        return match.group(2) if match else None


class Guardrail(_MetricModel):
    """The candidate may be worse than the baseline by at most `tolerance`.

    The tolerance is always an absolute difference of rates. For latency the
    rate is the share of requests slower than the baseline's `quantile`, so
    `{quantile: 0.95, tolerance: 0.02}` allows 7% slow requests where the
    baseline has 5%.
    """

    tolerance: Annotated[float, Field(ge=0)]
    """How much worse the candidate may be: an absolute difference of rates (0.002 = 0.2 points)."""
    # Latency only: count the candidate's requests slow above (1 + relative) times
    # the baseline's quantile, i.e. "its p95 may be up to 10% higher" with 0.1.
    relative: Annotated[float, Field(ge=0)] | None = None
    """For latency only: a request is slow above (1 + relative) times the baseline's quantile; unset: above it."""

    @model_validator(mode="after")
    def _quantile(self) -> Guardrail:
        _check_quantile(self.kind, self.quantile)
        if self.relative is not None and self.kind != "latency":
            raise spec_issue("relative only applies to the latency metric", hint="remove relative", field="relative")
        return self


class Limit(_MetricModel):
    """An absolute ceiling for the candidate alone: a rate, or seconds for latency."""

    max: float
    """The ceiling: a rate from 0 to 1, or a duration for latency (e.g. 2s)."""

    @model_validator(mode="before")
    @classmethod
    def _max_as_duration(cls, data: Any) -> Any:
        # The unit of `max` depends on the metric: latency takes a duration ("2s").
        if isinstance(data, dict) and data.get("metric") == "latency" and "max" in data:
            try:
                return {**data, "max": parse_duration(data["max"])}
            except ValueError as exc:
                raise spec_issue(str(exc), hint=DURATION_HINT, field="max") from None
        return data

    @model_validator(mode="after")
    def _check(self) -> Limit:
        _check_quantile(self.kind, self.quantile)
        if self.kind != "latency" and not 0 <= self.max <= 1:
            raise spec_issue(f"max must be a rate between 0 and 1, got {self.max}", hint="e.g. 0.2", field="max")
        if self.kind == "latency" and self.max <= 0:
            raise spec_issue("max must be more than 0", hint="e.g. max: 2s", field="max")
        return self


def _check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise spec_issue(f"invalid url {url!r}", hint="use an http:// or https:// address")
    return url


Url = Annotated[str, AfterValidator(_check_url)]


class Webhook(SpecModel):
    when: Literal["pre-rollout", "step", "post-rollout"]
    """pre-rollout, step or post-rollout: when the rollout calls it and waits for a 2xx."""
    url: Url
    """The http(s) URL to POST the rollout's state to."""
    timeout: PositiveDuration = 5.0
    """How long to wait for the answer."""


class Alert(SpecModel):
    url: Url
    """The http(s) URL to POST a message to."""
    on: list[Annotated[str, AfterValidator(lambda v: check_choice(v, ALERT_EVENTS, "alert event"))]] = Field(
        default_factory=lambda: list(ALERT_EVENTS), min_length=1
    )
    """Which outcomes send it: rollback, promoted, held."""


class AbMatch(SpecModel):
    """Requests carrying header == value go to the variant."""

    header: Annotated[str, BeforeValidator(lambda v: v.lower() if isinstance(v, str) else v), Field(min_length=1)]
    """The request header that picks the users who see the variant."""
    value: Annotated[str, BeforeValidator(scalar_to_str)]
    """Its value."""


def _default_guardrails() -> list[Guardrail]:
    # 0.2 points of extra errors: a 0.1% -> 1% regression is harm (see min_step for
    # how often it is caught); the 1-point tolerance caught none of them.
    return [
        Guardrail(metric="error_rate", tolerance=0.002),
        Guardrail(metric="latency", quantile=0.95, tolerance=0.05),
    ]


class RolloutPolicy(SpecModel):
    strategy: Literal["canary", "mirror", "ab"] = "canary"
    """canary: traffic steps; mirror: a dark launch on copies of the traffic; ab: the users `match` picks."""
    steps: list[Annotated[int, Field(ge=1, le=100)]] = Field(default_factory=lambda: [5, 25, 50, 100])
    """Candidate weights in percent, increasing; a canary ends at 100."""
    # 60 s: measured (tests/unit/test_rollout_sim.py) at 100 rps with steps 5, 25, 50, 100, a
    # 0.1% -> 1% regression is caught before 100% exposure in about 9 runs of 10, and an
    # identical candidate is promoted in 240 s; with 20 s steps the same regression was
    # caught in fewer than 1 in 10 once the 100% step stopped counting as evidence.
    min_step: PositiveDuration = 60.0
    """Least time at a step before it may advance."""
    max_step: PositiveDuration = 300.0
    """Most time at a step; then on_inconclusive decides."""
    on_inconclusive: Literal["hold", "advance"] = "advance"
    """At max_step without a verdict: advance, or hold for a person."""
    alpha: Annotated[float, Field(gt=0, lt=0.5)] = 0.05
    """False-rollback budget of the whole rollout (the sequential test's error rate)."""
    min_samples: Annotated[int, Field(ge=1)] = 200
    """Candidate requests a step needs before it may advance."""
    require_noninferiority: bool = False
    """Advance only once every guardrail shows the candidate is not worse by more than its tolerance."""
    guardrails: list[Guardrail] = Field(default_factory=_default_guardrails)
    """Comparisons with the baseline; a harmful candidate is rolled back at once."""
    limits: list[Limit] = Field(default_factory=lambda: [Limit(metric="error_rate", max=0.5)])
    """Hard ceilings on the candidate alone, checked every second over 10 s windows."""
    on_no_data: Literal["hold", "fail", "pass"] = "hold"
    """At max_step with no usable data: hold, fail (roll back) or pass (advance)."""
    match: AbMatch | None = None
    """For strategy ab: which requests go to the variant."""
    webhooks: list[Webhook] = Field(default_factory=list)
    """Gates the rollout waits on."""
    alerts: list[Alert] = Field(default_factory=list)
    """Where to send a message when the rollout ends or holds."""

    @field_validator("steps")
    @classmethod
    def _steps_increase(cls, steps: list[int]) -> list[int]:
        if not steps:
            raise spec_issue("list at least one step", hint="e.g. steps: [5, 25, 50, 100]")
        for before, after in zip(steps, steps[1:], strict=False):
            if after <= before:
                raise spec_issue(
                    f"steps must increase, but {after} follows {before}", hint="e.g. steps: [5, 25, 50, 100]"
                )
        return steps

    @model_validator(mode="after")
    def _consistent(self) -> RolloutPolicy:
        if self.strategy == "canary" and self.steps[-1] != 100:
            raise spec_issue(
                f"a canary must end at 100, but the last step is {self.steps[-1]}",
                hint=f"add 100: steps: {[*self.steps, 100]}",
                field="steps",
            )
        if self.strategy == "ab" and self.match is None:
            raise spec_issue(
                "an ab rollout needs match to pick the users who see the variant",
                hint='add match: {header: x-beta, value: "1"}',
                field="match",
            )
        if self.max_step < self.min_step:
            raise spec_issue(
                f"max_step ({self.max_step:g}s) is shorter than min_step ({self.min_step:g}s)",
                hint="make max_step at least min_step",
                field="max_step",
            )
        return self
