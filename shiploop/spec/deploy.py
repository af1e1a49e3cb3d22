"""What shipping beyond this machine needs: how a service's image is built
(`build:` in service.yaml) and the per-environment profiles of shiploop.yaml
(`profiles:`) that `shiploop render --target kubernetes` applies."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field

from shiploop.spec.base import SpecModel, scalar_to_str
from shiploop.spec.issues import spec_issue

# Kubernetes quantities: "100m", "0.5", "128Mi", "1G".
_QUANTITY = re.compile(r"[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?")
_NAMESPACE = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_BUILD_ARG = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _quantity(value: str) -> str:
    if not _QUANTITY.fullmatch(value):
        raise spec_issue(f"invalid quantity {value!r}", hint="write CPU like 250m or 0.5, memory like 128Mi or 1Gi")
    return value


def _namespace(value: str) -> str:
    if not _NAMESPACE.fullmatch(value):
        raise spec_issue(f"invalid namespace {value!r}", hint="use lowercase letters, digits and '-', e.g. shop-prod")
    return value


def _build_arg(name: str) -> str:
    if not _BUILD_ARG.fullmatch(name):
        raise spec_issue(f"invalid build argument name {name!r}", hint="use letters, digits and '_', e.g. APP_ENV")
    return name


Quantity = Annotated[str, BeforeValidator(scalar_to_str), AfterValidator(_quantity)]
Text = Annotated[str, BeforeValidator(scalar_to_str)]


class BuildSpec(SpecModel):
    dockerfile: str | None = None
    """The Dockerfile to build with, relative to the service directory; unset: `Dockerfile` or `Containerfile`
    when there is one, otherwise one generated from the fields below (`shiploop render --target dockerfile`)."""
    base_image: str = "python:3.11-slim"
    """The image a generated Dockerfile starts FROM."""
    install: list[Annotated[str, Field(min_length=1)]] | None = None
    """The command that installs dependencies in a generated Dockerfile, as a list; unset: `pip install -r
    requirements.txt` when the service has one, nothing otherwise."""
    args: dict[Annotated[str, AfterValidator(_build_arg)], Text] = Field(default_factory=dict)
    """Build arguments (`--build-arg`); they are part of the image tag."""
    port: Annotated[int, Field(ge=1, le=65535)] = 8080
    """The port the container listens on ($PORT inside it)."""


class Resources(SpecModel):
    cpu: Quantity = "100m"
    """CPU requested per replica."""
    memory: Quantity = "128Mi"
    """Memory requested per replica."""
    cpu_limit: Quantity = "500m"
    """Most CPU a replica may use."""
    memory_limit: Quantity = "256Mi"
    """Most memory a replica may use (it is OOM-killed above)."""


class ServiceProfile(SpecModel):
    replicas: Annotated[int, Field(ge=1, le=500)] | None = None
    """Replicas per version in this profile; unset: the service's `replicas`."""
    resources: Resources | None = None
    """Requests and limits in this profile; unset: the profile's `resources`."""
    env: dict[str, Text] = Field(default_factory=dict)
    """Environment added to (and overriding) the service's `run.env`."""
    host: str | None = None
    """The host name every route of the service matches in this profile (e.g. shop.example.com)."""


class Profile(SpecModel):
    namespace: Annotated[str, AfterValidator(_namespace)] | None = None
    """The Kubernetes namespace; unset: the project's name."""
    registry: str | None = None
    """The image registry, e.g. registry.example.com/shop; unset: the project's `registry`."""
    branches: list[str] = Field(default_factory=list)
    """Git branches that choose this profile when `--profile` is not given."""
    replicas: Annotated[int, Field(ge=1, le=500)] | None = None
    """Replicas per version of every service; unset: each service's `replicas`."""
    resources: Resources = Field(default_factory=Resources)
    """Requests and limits of every service's replicas."""
    env: dict[str, Text] = Field(default_factory=dict)
    """Environment added to every service."""
    services: dict[str, ServiceProfile] = Field(default_factory=dict)
    """Per-service overrides, by service name."""
    gateway_replicas: Annotated[int, Field(ge=1, le=100)] = 2
    """Replicas of the gateway (Envoy and the shiploop agent beside it)."""
    envoy_image: str | None = None
    """Envoy's image in the gateway; unset: envoyproxy/envoy at the version shiploop is tested with."""
    prometheus: str = "http://prometheus.monitoring.svc:9090"
    """The Prometheus the in-cluster controller reads metrics from."""
    shiploop_image: str | None = None
    """The image with shiploop (the gateway's agent, the controller); unset: REGISTRY/shiploop:VERSION."""
