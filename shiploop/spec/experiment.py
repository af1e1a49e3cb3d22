"""The experiment of a service: a hypothesis, how units are split, the metrics that answer it."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, model_validator

from shiploop.spec.base import SpecModel
from shiploop.spec.durations import PositiveDuration
from shiploop.spec.issues import spec_issue
from shiploop.spec.rollout import Guardrail, _default_guardrails

# A unit id travels in a cookie or a header; an event name in a response header
# (`Shiploop-Event: signup` or `purchase=12.50`): tokens, so no escaping anywhere.
_COOKIE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_HEADER_NAME = re.compile(r"[a-z0-9_-]{1,64}")
_EVENT_NAME = re.compile(r"[a-z0-9_.-]{1,64}")
_COUNTER = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_APP_RATIO = re.compile(rf"({_COUNTER})/({_COUNTER})")
# Headers shiploop itself sets or reads: a unit id there would be overwritten or spoofed.
_RESERVED_HEADERS = ("x-shiploop-variant", "x-shiploop-version", "shiploop-event", "cookie", "host")
DEFAULT_MAX_DURATION = 14 * 86400.0


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


def _check_cookie(name: str) -> str:
    if not _COOKIE_NAME.fullmatch(name):
        raise spec_issue(f"invalid cookie name {name!r}", hint="use letters, digits, '_' and '-', e.g. shiploop_uid")
    return name


def _check_header(name: str) -> str:
    if not _HEADER_NAME.fullmatch(name):
        raise spec_issue(f"invalid header name {name!r}", hint="use letters, digits, '_' and '-', e.g. x-user-id")
    if name in _RESERVED_HEADERS:
        raise spec_issue(f"header {name!r} is set by shiploop or the browser", hint="use your own, e.g. x-user-id")
    return name


def _check_event(name: str) -> str:
    if not _EVENT_NAME.fullmatch(name):
        raise spec_issue(
            f"invalid event name {name!r}", hint="use lowercase letters, digits, '_', '.' and '-', e.g. signup"
        )
    return name


class ExperimentUnit(SpecModel):
    """What identifies one unit (a visitor, a user): exactly one of cookie or header."""

    cookie: str | None = None
    """A cookie holding the unit id; Envoy creates it (a random id) for a visitor without one."""
    header: Annotated[str, BeforeValidator(_lower)] | None = None
    """A request header holding the unit id (e.g. x-user-id); requests without it are not in the experiment."""

    @model_validator(mode="after")
    def _exactly_one(self) -> ExperimentUnit:
        given = [k for k in ("cookie", "header") if getattr(self, k) is not None]
        if len(given) != 1:
            found = " and ".join(given) if given else "neither"
            raise spec_issue(
                f"a unit is a cookie or a header (found {found})",
                hint="e.g. unit: {cookie: shiploop_uid} or unit: {header: x-user-id}",
            )
        if self.cookie is not None:
            _check_cookie(self.cookie)
        if self.header is not None:
            _check_header(self.header)
        return self

    @property
    def kind(self) -> Literal["cookie", "header"]:
        return "cookie" if self.cookie is not None else "header"

    @property
    def name(self) -> str:
        return self.cookie or self.header or ""


class ExperimentMetric(SpecModel):
    """An event per unit ({event: signup}: share of units with one; value: sum, mean of the values per unit)
    or a request-level ratio of app counters ({app: checkout_total/visits_total})."""

    event: str | None = None
    """An event the app reports in a `Shiploop-Event` response header; per unit: did it happen at least once."""
    value: Literal["sum"] | None = None
    """sum: the metric is the mean per unit of the values reported with the event (`purchase=12.50`)."""
    app: str | None = None
    """NUMERATOR/DENOMINATOR: counters scraped from the replicas' /metrics, compared per request."""

    @model_validator(mode="after")
    def _one_kind(self) -> ExperimentMetric:
        if (self.event is None) == (self.app is None):
            raise spec_issue(
                "a metric is an event or an app ratio",
                hint="e.g. {event: signup} or {app: checkout_total/visits_total}",
            )
        if self.event is not None:
            _check_event(self.event)
        if self.app is not None:
            if self.value is not None:
                raise spec_issue("value only applies to an event metric", hint="remove value", field="value")
            if not _APP_RATIO.fullmatch(self.app):
                raise spec_issue(
                    f"invalid app ratio {self.app!r}",
                    hint="write NUMERATOR/DENOMINATOR counters, e.g. checkout_total/visits_total",
                    field="app",
                )
        return self

    @property
    def kind(self) -> Literal["conversion", "sum", "app_ratio"]:
        if self.app is not None:
            return "app_ratio"
        return "sum" if self.value == "sum" else "conversion"

    @property
    def label(self) -> str:
        if self.app is not None:
            return f"app:{self.app}"
        return f"{self.event} value per unit" if self.value == "sum" else f"{self.event} per unit"

    @property
    def numerator(self) -> str | None:
        match = _APP_RATIO.fullmatch(self.app or "")
        return match.group(1) if match else None

    @property
    def denominator(self) -> str | None:
        match = _APP_RATIO.fullmatch(self.app or "")
        return match.group(2) if match else None


class ExperimentMetrics(SpecModel):
    primary: ExperimentMetric
    """The metric the hypothesis is about; decides the experiment. An event metric (per unit)."""
    secondary: list[ExperimentMetric] = Field(default_factory=list)
    """Shown beside it with their own intervals; never decide."""

    @model_validator(mode="after")
    def _primary_per_unit(self) -> ExperimentMetrics:
        if self.primary.kind == "app_ratio":
            raise spec_issue(
                "the primary metric must be an event, measured per unit",
                hint="e.g. primary: {event: signup}; list app ratios under secondary",
                field="primary",
            )
        return self


class ExperimentSpec(SpecModel):
    hypothesis: Annotated[str, Field(min_length=1)]
    """What the candidate should change, in one sentence, e.g. "The one-field form raises signups per visitor"."""
    unit: ExperimentUnit
    """What is assigned to a variant and stays there: {cookie: NAME} or {header: NAME}."""
    allocation: Annotated[float, Field(gt=0, lt=100)] = 50.0
    """Percent of units that see the candidate; the rest see the stable version."""
    metrics: ExperimentMetrics
    """primary (decides) and secondary (shown)."""
    minimum_detectable_effect: Annotated[float, Field(gt=0)]
    """The smallest absolute lift of the primary metric worth detecting, e.g. 0.01 (one point of conversion)."""
    alpha: Annotated[float, Field(gt=0, lt=0.5)] = 0.05
    """Error rate of the always-valid interval: the chance of shipping a variant that does not help."""
    guardrails: list[Guardrail] = Field(default_factory=_default_guardrails)
    """As in rollouts: the candidate may be worse than stable by at most tolerance; harm stops the experiment."""
    max_duration: PositiveDuration = DEFAULT_MAX_DURATION
    """Longest run; then the experiment ends inconclusive (e.g. 14d)."""

    @model_validator(mode="after")
    def _mde_fits(self) -> ExperimentSpec:
        if self.metrics.primary.kind == "conversion" and self.minimum_detectable_effect >= 1:
            raise spec_issue(
                f"minimum_detectable_effect is an absolute difference of rates, got {self.minimum_detectable_effect:g}",
                hint="e.g. 0.01 for one point of conversion",
                field="minimum_detectable_effect",
            )
        return self


# Re-exported so callers need not know the guardrail lives with rollouts.
__all__ = ["ExperimentMetric", "ExperimentMetrics", "ExperimentSpec", "ExperimentUnit", "Guardrail"]
