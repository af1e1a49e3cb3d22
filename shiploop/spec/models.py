"""service.yaml and shiploop.yaml as pydantic models.

Validation here knows nothing of files or lines: validators raise `spec_issue`
and the loader maps each error back to the line of the offending key.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, ValidationInfo, field_validator, model_validator

from shiploop.errors import Invalid
from shiploop.spec import envoy_rules
from shiploop.spec.base import SpecModel, check_choice, scalar_to_str
from shiploop.spec.deploy import BuildSpec, Profile
from shiploop.spec.durations import PositiveDuration
from shiploop.spec.experiment import ExperimentSpec
from shiploop.spec.issues import spec_issue
from shiploop.spec.rollout import RolloutPolicy

HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE")
RETRY_ON = (
    "5xx",
    "gateway-error",
    "reset",
    "connect-failure",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "envoy-ratelimited",
    "http3-post-connect-failure",
)
DEFAULT_RETRY_ON = ("connect-failure", "refused-stream", "gateway-error")
MAX_REPLICAS = 50

_SERVICE_NAME = re.compile(r"[a-z][a-z0-9-]*")
_PROJECT_NAME = re.compile(r"[a-z0-9-]+")
# Later a version becomes a Kubernetes Service named "<name>-<12 hex>", and those
# must fit a 63-character DNS label.
_MAX_NAME = 50
_HOST = re.compile(r"(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:[0-9]{1,5})?")
_HEADER_NAME = re.compile(r"[a-z0-9!#$%&'*+.^_`|~-]+")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")


def check_service_name(name: str) -> str:
    if not _SERVICE_NAME.fullmatch(name) or len(name) > _MAX_NAME:
        suggestion = _slug(name).lstrip("0123456789-")[:_MAX_NAME] or "web"
        raise spec_issue(
            f"invalid service name {name!r}: use lowercase letters, digits and '-', starting with a letter, "
            f"at most {_MAX_NAME} characters",
            hint=f"try '{suggestion}'",
        )
    return name


def check_project_name(name: str) -> str:
    if not _PROJECT_NAME.fullmatch(name) or len(name) > _MAX_NAME:
        raise spec_issue(
            f"invalid project name {name!r}: use lowercase letters, digits and '-'",
            hint=f"try '{_slug(name)[:_MAX_NAME] or 'shop'}'",
        )
    return name


def _check_url_path(value: str) -> str:
    if not value.startswith("/") or any(c.isspace() for c in value):
        raise spec_issue(f"{value!r} must start with '/' and contain no spaces", hint=f"try '/{value.strip()}'")
    return _envoy_rule(envoy_rules.url_path, value)


def _envoy_rule(check: Any, value: Any) -> Any:
    """Run one of Envoy's rules (shared with the API) as a spec validator."""
    try:
        return check(value)
    except Invalid as exc:
        raise spec_issue(exc.message, hint=exc.hint) from None


def check_header_name(name: str) -> str:
    """A header name for the API: Envoy's and RFC 9110's rules, lowercased."""
    return envoy_rules.header_name(name)


def check_header_value(value: str) -> str:
    return envoy_rules.header_value(value)


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


def _check_header_name(name: str) -> str:
    if not _HEADER_NAME.fullmatch(name):
        raise spec_issue(f"invalid header name {name!r}", hint="use letters, digits and '-', e.g. x-tenant")
    return str(_envoy_rule(envoy_rules.header_name, name))


UrlPath = Annotated[str, AfterValidator(_check_url_path)]
HttpMethod = Annotated[
    str, BeforeValidator(_upper), AfterValidator(lambda m: check_choice(m, HTTP_METHODS, "HTTP method"))
]
RetryOn = Annotated[str, AfterValidator(lambda v: check_choice(v, RETRY_ON, "retry condition"))]
HeaderName = Annotated[str, BeforeValidator(_lower), AfterValidator(_check_header_name)]
Text = Annotated[str, BeforeValidator(scalar_to_str)]
HeaderValue = Annotated[
    str, BeforeValidator(scalar_to_str), AfterValidator(lambda v: _envoy_rule(envoy_rules.header_value, v))
]
# A duration Envoy sees: positive, and within what it can hold.
EnvoyDuration = Annotated[PositiveDuration, AfterValidator(lambda v: _envoy_rule(envoy_rules.duration, v))]
Count = Annotated[int, Field(ge=1, le=2**32 - 1)]


class RetryPolicy(SpecModel):
    attempts: Annotated[int, Field(ge=0, le=10)] = 1
    """Retries after the first try (Envoy's num_retries); 0 turns retries off."""
    on: list[RetryOn] = Field(default_factory=lambda: list(DEFAULT_RETRY_ON))
    """When to retry: Envoy's retry_on conditions (5xx, gateway-error, reset, connect-failure, retriable-4xx,
    refused-stream, retriable-status-codes, retriable-headers, envoy-ratelimited, http3-post-connect-failure)."""
    per_try_timeout: EnvoyDuration | None = None
    """Time limit of each try (a duration); unset: each try may use the whole route timeout."""

    @model_validator(mode="after")
    def _on_needed(self) -> RetryPolicy:
        if self.attempts > 0 and not self.on:
            raise spec_issue(
                "list at least one retry condition", hint="or set attempts: 0 to turn retries off", field="on"
            )
        return self


class RouteSpec(SpecModel):
    prefix: UrlPath | None = None
    """Match paths starting with this, e.g. /api/. Exactly one of prefix, path, regex."""
    path: UrlPath | None = None
    """Match this one exact path."""
    regex: str | None = None
    """Match paths by a regular expression (the whole path), e.g. ^/items/[0-9]+$."""
    rewrite: UrlPath | None = None
    """Replace the matched prefix with this before forwarding (prefix routes only), e.g. /."""
    host: str | None = None
    """Match only this Host (an exact domain or *.wildcard, optional :port)."""
    methods: list[HttpMethod] | None = None
    """Match only these HTTP methods, e.g. [GET, HEAD]; unset: any method."""
    headers: dict[HeaderName, HeaderValue] = Field(default_factory=dict)
    """Match only requests carrying every one of these headers with exactly these values."""
    timeout: EnvoyDuration = 15.0
    """Time limit of a request, retries included (a duration); defaults.timeout of shiploop.yaml when unset."""
    retries: RetryPolicy = Field(default_factory=RetryPolicy)
    """How Envoy retries a failed request."""

    @field_validator("regex")
    @classmethod
    def _regex_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            _envoy_rule(envoy_rules.regex, value)  # RE2, as Envoy reads it: Python's re accepts more
        return value

    @field_validator("host", mode="before")
    @classmethod
    def _host_lower(cls, value: object) -> object:
        return _lower(value)

    @field_validator("host")
    @classmethod
    def _host_valid(cls, value: str | None) -> str | None:
        if value is not None and not _HOST.fullmatch(value):
            raise spec_issue(
                f"invalid host {value!r}",
                hint="use an exact domain like shop.local or a wildcard like *.shop.local",
            )
        return value

    @field_validator("methods")
    @classmethod
    def _methods_distinct(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not value:
            raise spec_issue("list at least one method", hint="leave out `methods` to match any method")
        return sorted(set(value), key=value.index)

    @field_validator("headers", mode="before")
    @classmethod
    def _headers_distinct(cls, value: object) -> object:
        if isinstance(value, dict):
            seen: dict[str, object] = {}
            for key in value:
                low = key.lower() if isinstance(key, str) else key
                if low in seen:
                    raise spec_issue(
                        f"header {key!r} is listed twice (header names ignore case)", hint="keep one of them"
                    )
                seen[low] = key
        return value

    @model_validator(mode="after")
    def _one_match(self) -> RouteSpec:
        given = [k for k in ("prefix", "path", "regex") if getattr(self, k) is not None]
        if len(given) != 1:
            found = " and ".join(given) if given else "none"
            raise spec_issue(
                f"a route needs exactly one of prefix, path or regex (found {found})",
                hint="use prefix for a path prefix, path for one exact path, regex for a pattern",
            )
        if self.rewrite is not None and self.prefix is None:
            raise spec_issue(
                "rewrite only works with prefix", hint="drop rewrite or match with prefix", field="rewrite"
            )
        return self

    @property
    def kind(self) -> str:
        """ "prefix", "path" or "regex"."""
        return "prefix" if self.prefix is not None else "path" if self.path is not None else "regex"

    @property
    def value(self) -> str:
        return self.prefix or self.path or self.regex or ""

    def match_key(self) -> tuple[str, str, str, tuple[str, ...], tuple[tuple[str, str], ...]]:
        """What this route matches, for finding two routes that claim the same requests."""
        return (
            self.kind,
            self.value,
            self.host or "",
            tuple(sorted(self.methods or ())),
            tuple(sorted(self.headers.items())),
        )

    def describe(self) -> str:
        text = f"{self.kind} {self.value}"
        if self.host:
            text += f" host {self.host}"
        if self.methods:
            text += " methods " + ",".join(self.methods)
        if self.headers:
            text += " headers " + ",".join(f"{k}={v}" for k, v in sorted(self.headers.items()))
        return text


def _command_list(value: object) -> object:
    if isinstance(value, str):
        try:
            words = shlex.split(value)
        except ValueError:
            words = value.split()
        raise spec_issue("command must be a list, not a string", hint=f"write it as command: {json.dumps(words)}")
    return value


def _env_name(name: str) -> str:
    if not name or "=" in name or "\0" in name:
        raise spec_issue(f"invalid environment variable name {name!r}", hint="use a name like GREETING")
    return name


class RunSpec(SpecModel):
    command: Annotated[list[Annotated[str, Field(min_length=1)]], BeforeValidator(_command_list), Field(min_length=1)]
    """The command that starts one replica, as a list; it must listen on $PORT.
    `python` means the interpreter shiploop runs on."""
    env: dict[Annotated[str, BeforeValidator(scalar_to_str), AfterValidator(_env_name)], Text] = Field(
        default_factory=dict
    )
    """Extra environment of every replica (shiploop sets PORT, SHIPLOOP_SERVICE, SHIPLOOP_VERSION)."""


class HealthCheck(SpecModel):
    path: UrlPath = "/healthz"
    """The path a replica answers 2xx on when it is ready."""
    timeout: PositiveDuration = 2.0
    """How long one health check may take."""
    interval: PositiveDuration = 1.0
    """Time between health checks of a running replica."""


class CircuitBreaker(SpecModel):
    max_connections: Count = 1024
    """Most connections Envoy opens to one version."""
    max_pending_requests: Count = 1024
    """Most requests waiting for a connection to one version; more are answered 503."""
    max_requests: Count = 1024
    """Most requests in flight to one version."""
    max_retries: Annotated[int, Field(ge=0, le=2**32 - 1)] = 3
    """Most retries in flight to one version."""


class OutlierDetection(SpecModel):
    enabled: bool = True
    """Take a replica out of the pool when it keeps failing."""
    consecutive_5xx: Count = 5
    """Consecutive 5xx answers that eject a replica."""
    interval: EnvoyDuration = 5.0
    """How often ejections are evaluated."""
    base_ejection_time: EnvoyDuration = 30.0
    """How long a replica stays ejected (longer each time it is ejected again)."""
    max_ejection_percent: Annotated[int, Field(ge=0, le=100)] = 50
    """Most replicas of a version ejected at once, in percent."""


class ProjectDefaults(SpecModel):
    replicas: Annotated[int, Field(ge=1, le=MAX_REPLICAS)] = 1
    """Replicas of a service whose service.yaml does not say."""
    timeout: EnvoyDuration = 15.0
    """Route timeout where a route does not say."""


class GatewaySpec(SpecModel):
    port: Annotated[int, Field(ge=1, le=65535)] = 8080
    """The port Envoy serves every service on, on 127.0.0.1 (`shiploop up --port N` overrides it)."""


class RemoteSpec(SpecModel):
    tls_cert: str | None = None
    """The PEM certificate `shiploop up --listen` serves the TLS API and tunnel with (relative to the project);
    unset: a self-signed one is generated into .shiploop/remote/."""
    tls_key: str | None = None
    """The PEM private key of `tls_cert`."""

    @model_validator(mode="after")
    def _both_or_neither(self) -> RemoteSpec:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise spec_issue(
                "remote: give both tls_cert and tls_key, or neither (a certificate is then generated)",
                hint="e.g. remote: {tls_cert: certs/host.pem, tls_key: certs/host.key}",
            )
        return self


METRIC_SOURCES = ("envoy", "prometheus")


def _check_prometheus_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise spec_issue(
            f"invalid Prometheus url {url!r}: use http(s)://HOST:PORT, no query",
            hint="e.g. url: http://127.0.0.1:9090",
        )
    return url.rstrip("/")


class MetricsSpec(SpecModel):
    """Where rollouts read their counts from (docs/metrics.md, "Rollouts judged from Prometheus")."""

    source: Annotated[str, AfterValidator(lambda v: check_choice(v, METRIC_SOURCES, "metrics source"))] = "envoy"
    """envoy: Envoy's own counters, read every second; prometheus: the same counters as a Prometheus scraped them."""
    url: Annotated[str, AfterValidator(_check_prometheus_url)] | None = None
    """For source prometheus: its base URL; unset: the Prometheus `shiploop up --prometheus` runs."""
    scrape_interval: PositiveDuration = 5.0
    """For source prometheus: how often it scrapes; a step's first reading waits up to twice this for fresh counts."""

    @model_validator(mode="after")
    def _url_needs_prometheus(self) -> MetricsSpec:
        if self.url is not None and self.source != "prometheus":
            raise spec_issue(
                "url only applies to source: prometheus", hint="add source: prometheus, or remove url", field="url"
            )
        return self


def default_route(name: str) -> dict[str, Any]:
    return {"prefix": f"/{name}/", "rewrite": "/"}


class ServiceSpec(SpecModel):
    name: Annotated[str, AfterValidator(check_service_name)]
    """The service's name: lowercase letters, digits and '-', starting with a letter, at most 50 characters."""
    run: RunSpec
    """How to start one replica."""
    health: HealthCheck = Field(default_factory=HealthCheck)
    """How shiploop tells a replica is ready."""
    replicas: Annotated[int, Field(ge=1, le=MAX_REPLICAS)] = 1
    """Processes per version; defaults.replicas of shiploop.yaml when unset."""
    routes: list[RouteSpec] = Field(default_factory=list)
    """Which requests reach this service; unset: prefix /NAME/ rewritten to /."""
    circuit_breaker: CircuitBreaker = Field(default_factory=CircuitBreaker)
    """Envoy's limits on traffic to each version."""
    outlier_detection: OutlierDetection = Field(default_factory=OutlierDetection)
    """Envoy ejecting failing replicas."""
    rollout: RolloutPolicy = Field(default_factory=RolloutPolicy)
    """How `shiploop rollout` ships and judges a new version (the candidate's own file decides)."""
    experiment: ExperimentSpec | None = None
    """A hypothesis `shiploop experiment` tests on this version against stable (the candidate's own file decides)."""
    build: BuildSpec = Field(default_factory=BuildSpec)
    """How `shiploop build` makes the service's container image."""
    # Set by the loader, never read from service.yaml.
    directory: Annotated[Path, Field(strict=False)] = Path(".")

    @model_validator(mode="before")
    @classmethod
    def _apply_defaults(cls, data: Any, info: ValidationInfo) -> Any:
        """Fill project defaults and the default route before fields validate.

        Done on the raw mapping so an explicit value always wins and errors in
        user-written routes keep their own positions.
        """
        if not isinstance(data, dict):
            return data
        context = info.context if isinstance(info.context, dict) else {}
        defaults = context.get("defaults") or ProjectDefaults()
        data = dict(data)
        if data.get("replicas") is None:
            data["replicas"] = defaults.replicas
        routes = data.get("routes")
        if routes is None:
            name = data.get("name")
            routes = [default_route(name)] if isinstance(name, str) and _SERVICE_NAME.fullmatch(name) else []
        elif routes == []:
            raise spec_issue(
                "list at least one route",
                hint="leave out `routes` to get the default /<name>/",
                field="routes",
            )
        if isinstance(routes, list):
            routes = [{"timeout": defaults.timeout, **r} if isinstance(r, dict) else r for r in routes]
        data["routes"] = routes
        return data

    @model_validator(mode="after")
    def _distinct_routes(self) -> ServiceSpec:
        seen: dict[tuple[object, ...], int] = {}
        for index, route in enumerate(self.routes):
            key = route.match_key()
            if key in seen:
                raise spec_issue(
                    f"route {route.describe()} is the same as routes[{seen[key]}]",
                    hint="remove one, or tell them apart by host, methods or headers",
                    field=f"routes.{index}",
                )
            seen[key] = index
        return self


class ProjectSpec(SpecModel):
    name: Annotated[str, AfterValidator(check_project_name)]
    """The project's name: lowercase letters, digits and '-'."""
    gateway: GatewaySpec = Field(default_factory=GatewaySpec)
    """Where Envoy listens."""
    defaults: ProjectDefaults = Field(default_factory=ProjectDefaults)
    """Defaults for every service."""
    prometheus: bool = False
    """Also run a Prometheus scraping the project (as `shiploop up --prometheus`; docs/metrics.md)."""
    metrics: MetricsSpec = Field(default_factory=MetricsSpec)
    """Where rollouts read requests, 5xx, latency and app counters from."""
    remote: RemoteSpec = Field(default_factory=RemoteSpec)
    """The TLS certificate of a shared host (`shiploop up --listen ADDR`)."""
    registry: str | None = None
    """Where `shiploop build --push` pushes images, e.g. registry.example.com/shop (`--registry` overrides it)."""
    profiles: dict[str, Profile] = Field(default_factory=dict)
    """Per-environment overrides for `shiploop render --target kubernetes --profile NAME`."""
    # Set by the loader, never read from shiploop.yaml.
    root: Annotated[Path, Field(strict=False)] = Path(".")
    services: dict[str, ServiceSpec] = Field(default_factory=dict)
