"""A deployed version's spec as stored (JSON in its deployment row) and how to run it."""

from __future__ import annotations

import json
from typing import Any

from shiploop.runtime.local import RunConfig
from shiploop.spec import ServiceSpec


def run_config(spec: ServiceSpec) -> RunConfig:
    return RunConfig(spec.run.command, dict(spec.run.env), spec.directory, spec.health.path, spec.health.timeout)


def spec_to_json(spec: ServiceSpec) -> dict[str, Any]:
    return dict(json.loads(spec.model_dump_json()))


def spec_from_json(data: dict[str, Any]) -> ServiceSpec:
    return ServiceSpec.model_validate_json(json.dumps(data))
