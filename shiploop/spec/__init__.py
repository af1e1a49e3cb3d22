"""service.yaml and shiploop.yaml: models, loading, and one-line errors."""

from shiploop.spec.durations import Duration, PositiveDuration, format_duration, parse_duration
from shiploop.spec.experiment import ExperimentMetric, ExperimentMetrics, ExperimentSpec, ExperimentUnit
from shiploop.spec.issues import SpecError
from shiploop.spec.loader import PROJECT_FILE, SERVICE_FILE, find_service_files, load_project, load_service
from shiploop.spec.models import (
    DEFAULT_RETRY_ON,
    HTTP_METHODS,
    RETRY_ON,
    CircuitBreaker,
    GatewaySpec,
    HealthCheck,
    OutlierDetection,
    ProjectDefaults,
    ProjectSpec,
    RetryPolicy,
    RouteSpec,
    RunSpec,
    ServiceSpec,
    check_header_name,
    check_header_value,
)
from shiploop.spec.rollout import ALERT_EVENTS, AbMatch, Alert, Guardrail, Limit, RolloutPolicy, Webhook

__all__ = [
    "ALERT_EVENTS",
    "DEFAULT_RETRY_ON",
    "HTTP_METHODS",
    "PROJECT_FILE",
    "RETRY_ON",
    "SERVICE_FILE",
    "AbMatch",
    "Alert",
    "CircuitBreaker",
    "Duration",
    "ExperimentMetric",
    "ExperimentMetrics",
    "ExperimentSpec",
    "ExperimentUnit",
    "GatewaySpec",
    "Guardrail",
    "HealthCheck",
    "Limit",
    "OutlierDetection",
    "PositiveDuration",
    "ProjectDefaults",
    "ProjectSpec",
    "RetryPolicy",
    "RolloutPolicy",
    "RouteSpec",
    "RunSpec",
    "ServiceSpec",
    "SpecError",
    "Webhook",
    "check_header_name",
    "check_header_value",
    "find_service_files",
    "format_duration",
    "load_project",
    "load_service",
    "parse_duration",
]
