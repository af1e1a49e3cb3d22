"""Prometheus alerting rules for shiploop (`shiploop alerts export`).

The same rules fit every project: each alert carries the `project` label of the series it
fired on. Every rule's `runbook` annotation names the shiploop commands to run, with the
alert's own labels filled in by Prometheus ({{ $labels.service }}); tests/unit/test_alerts.py
parses each of them with the CLI's own parser.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from shiploop.telemetry.promql import error_share, latency_quantile, request_rate
from shiploop.telemetry.scrape_config import JOB_DAEMON, JOB_ENVOY

SERVICE = "{{ $labels.service }}"
VERSION = "{{ $labels.version }}"
TRACK = "{{ $labels.track }}"
CANDIDATE = "{{ $labels.candidate }}"
ROLLOUT = "{{ $labels.rollout }}"
PROJECT = "{{ $labels.project }}"

# The commands the runbooks name, each written once (tests/unit/test_alerts.py parses them all).
ROLLOUT_STATUS = f"`shiploop rollout status {SERVICE}`"
ROLLOUT_RESUME = f"`shiploop rollout resume {SERVICE}`"
ROLLOUT_PROMOTE = f"`shiploop rollout promote {SERVICE}`"
ROLLOUT_ABORT = f"`shiploop rollout abort {SERVICE}`"
ROLLOUT_AGAIN = f"`shiploop rollout {SERVICE}`"
ROLLBACK = f"`shiploop rollback {SERVICE}`"
VERSION_LOGS = f"`shiploop logs {SERVICE} --version {VERSION}`"
CANDIDATE_LOGS = f"`shiploop logs {SERVICE} --version {CANDIDATE}`"
SERVICE_EVENTS = f"`shiploop events {SERVICE}`"
HISTORY = f"`shiploop history {SERVICE}`"
EVENTS = "`shiploop events`"
STATUS = "`shiploop status`"
UP = "`shiploop up --detach`"

# A version beside stable: the canary (or a B of an A/B), or a dark launch's shadow (copies).
CANDIDATES = 'track=~"canary|shadow"'
STABLE = 'track="stable"'
BY_VERSION = "project, service, version, track"
BY_SERVICE = "project, service"
WINDOW = "5m"
# Below this a share or a quantile is a handful of requests: the rollouts' own statistics
# judge those; an alert that pages on three requests is noise.
MIN_RPS = 0.2
ERROR_SHARE_ABOVE_STABLE = 0.05  # five points more 5xx than stable
P95_RATIO = 1.5  # and at least P95_FLOOR_MS, so sub-millisecond jitter does not page
P95_FLOOR_MS = 25
RESTARTS_IN_10M = 3


@dataclass(frozen=True)
class Rule:
    alert: str
    expr: str
    summary: str
    description: str
    runbook: str  # the shiploop commands to run, in backticks
    for_: str = "0m"
    severity: str = "warning"

    def to_yaml(self) -> dict[str, Any]:
        return {
            "alert": self.alert,
            "expr": self.expr,
            "for": self.for_,
            "labels": {"severity": self.severity},
            "annotations": {"summary": self.summary, "description": self.description, "runbook": self.runbook},
        }


def _busy(match: str) -> str:
    return f"{request_rate(match, BY_VERSION, WINDOW)} > {MIN_RPS}"


VERSION_RULES = (
    Rule(
        "ShiploopVersionErrorsAboveStable",
        f"(\n  ({error_share(CANDIDATES, BY_VERSION, WINDOW)})\n"
        f"  - on (project, service) group_left()\n  ({error_share(STABLE, BY_SERVICE, WINDOW)})\n)"
        f" > {ERROR_SHARE_ABOVE_STABLE:g}\nand on (project, service, version, track)\n{_busy(CANDIDATES)}",
        f"{SERVICE} {VERSION} ({TRACK}) answers {{{{ $value | humanizePercentage }}}} more 5xx than stable",
        f"Over {WINDOW}, the share of 5xx answers of version {VERSION} of {SERVICE} ({TRACK}) is "
        f"{ERROR_SHARE_ABOVE_STABLE:.0%} or more above its stable version's, in project {PROJECT}.",
        f"See how the rollout judges it: {ROLLOUT_STATUS}; the version's own "
        f"output: {VERSION_LOGS}; take it out of traffic: "
        f"{ROLLBACK} (or {ROLLOUT_ABORT} while a rollout runs).",
        for_="2m",
    ),
    Rule(
        "ShiploopVersionSlowerThanStable",
        f"(\n  {latency_quantile(0.95, CANDIDATES, BY_VERSION, WINDOW)}\n"
        f"  / on (project, service) group_left()\n  {latency_quantile(0.95, STABLE, BY_SERVICE, WINDOW)}\n)"
        f" > {P95_RATIO:g}\nand on (project, service, version, track)\n"
        f"{latency_quantile(0.95, CANDIDATES, BY_VERSION, WINDOW)} > {P95_FLOOR_MS}\n"
        f"and on (project, service, version, track)\n{_busy(CANDIDATES)}",
        f'{SERVICE} {VERSION} ({TRACK}) has a p95 latency {{{{ $value | printf "%.1f" }}}} times stable\'s',
        f"Over {WINDOW}, the 95th percentile of upstream latency of version {VERSION} of {SERVICE} "
        f"({TRACK}) is more than {P95_RATIO:g} times its stable version's and above {P95_FLOOR_MS} ms, "
        f"in project {PROJECT}.",
        f"See how the rollout judges it: {ROLLOUT_STATUS}; the version's own "
        f"output: {VERSION_LOGS}; take it out of traffic: "
        f"{ROLLBACK} (or {ROLLOUT_ABORT} while a rollout runs).",
        for_="2m",
    ),
)

ROLLOUT_RULES = (
    Rule(
        "ShiploopRolloutHeld",
        'shiploop_rollout_state{state="held"} == 1',
        f"The rollout of {SERVICE} is held: it waits for a person",
        f"Rollout #{ROLLOUT} of {SERVICE} ({CANDIDATE}) is held in project {PROJECT}: its policy "
        "holds when a step stays inconclusive, or routing does not do what was configured (SRM).",
        f"See why: {ROLLOUT_STATUS} and {SERVICE_EVENTS}; then go on: "
        f"{ROLLOUT_RESUME}, or {ROLLOUT_PROMOTE}, or "
        f"{ROLLOUT_ABORT}.",
    ),
    Rule(
        "ShiploopRolloutRolledBack",
        'shiploop_rollout_state{state="rolled_back"} == 1',
        f"The rollout of {SERVICE} was rolled back",
        f"Rollout #{ROLLOUT} of {SERVICE} judged {CANDIDATE} harmful and sent all traffic back to "
        f"stable, in project {PROJECT}. It resolves when the next rollout starts or an hour later.",
        f"The decisive evidence: {HISTORY} and {SERVICE_EVENTS}; the candidate's output: {CANDIDATE_LOGS}.",
    ),
    Rule(
        "ShiploopRolloutFailed",
        'shiploop_rollout_state{state="failed"} == 1',
        f"The rollout of {SERVICE} failed",
        f"Rollout #{ROLLOUT} of {SERVICE} ({CANDIDATE}) ended without a verdict in project "
        f"{PROJECT} (the candidate could not start, a webhook refused, or the evidence was lost).",
        f"See why: {SERVICE_EVENTS} and {CANDIDATE_LOGS}; try again: {ROLLOUT_AGAIN}.",
    ),
)

GATEWAY_RULES = (
    Rule(
        "ShiploopGatewayDown",
        f'min by (project, instance) (up{{job="{JOB_ENVOY}"}}) == 0',
        f"The Envoy gateway of {PROJECT} is down",
        f"Prometheus cannot scrape Envoy's stats listener ({{{{ $labels.instance }}}}) of project "
        f"{PROJECT}: Envoy is down, and no service answers through the gateway.",
        f"Check it: {STATUS} (the daemon starts Envoy again by itself within seconds; "
        f"status names the logs); if the daemon is down too: {UP}.",
        for_="1m",
        severity="critical",
    ),
    Rule(
        "ShiploopDaemonDown",
        f'up{{job="{JOB_DAEMON}"}} == 0',
        f"The shiploop daemon of {PROJECT} is down",
        f"Prometheus cannot scrape the daemon's /metrics ({{{{ $labels.instance }}}}) of project "
        f"{PROJECT}: nothing supervises Envoy or the replicas, and no rollout is judged.",
        f"Check it: {STATUS}; start it again (it adopts the running Envoy and replicas): {UP}.",
        for_="1m",
        severity="critical",
    ),
    Rule(
        "ShiploopEnvoyRejectedRoutes",
        "increase(shiploop_envoy_rejections_total[10m]) > 0",
        f"Envoy rejected a routing change of {PROJECT}",
        f"Envoy refused a routing generation in project {PROJECT} in the last 10 minutes; the "
        "previous routes kept serving, so the change that was asked for is not in effect.",
        f"The command that asked for it printed Envoy's reason; see what changed: {EVENTS} "
        f"and where the daemon log is: {STATUS}.",
    ),
    Rule(
        "ShiploopEnvoyRestarting",
        "increase(shiploop_envoy_restarts_total[10m]) > 1",
        f"Envoy of {PROJECT} keeps dying",
        f"The daemon of project {PROJECT} started Envoy again more than once in 10 minutes.",
        f"See the gateway and where its log is: {STATUS}.",
    ),
)

REPLICA_RULES = (
    Rule(
        "ShiploopReplicaCrashLooping",
        f"increase(shiploop_replica_restarts_total[10m]) > {RESTARTS_IN_10M}",
        f"Replicas of {SERVICE} {VERSION} ({TRACK}) keep crashing",
        f"Replicas of version {VERSION} of {SERVICE} ({TRACK}) restarted more than "
        f"{RESTARTS_IN_10M} times in 10 minutes, in project {PROJECT}.",
        f"Why they exit: {VERSION_LOGS}; replicas ready: {STATUS}; a canary can be taken out: {ROLLBACK}.",
    ),
)

GROUPS: dict[str, tuple[Rule, ...]] = {
    "shiploop-versions": VERSION_RULES,
    "shiploop-rollouts": ROLLOUT_RULES,
    "shiploop-gateway": GATEWAY_RULES,
    "shiploop-replicas": REPLICA_RULES,
}


def all_rules() -> list[Rule]:
    return [rule for rules in GROUPS.values() for rule in rules]


class _Dumper(yaml.SafeDumper):
    """PromQL over several lines as a YAML block, as people write rule files."""


def _str(dumper: yaml.SafeDumper, text: str) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|" if "\n" in text else None)


_Dumper.add_representer(str, _str)


def alert_rules() -> str:
    body = {"groups": [{"name": name, "rules": [r.to_yaml() for r in rules]} for name, rules in GROUPS.items()]}
    header = (
        "# Prometheus alerting rules for shiploop projects (shiploop alerts export).\n"
        "# Add this file to rule_files in the Prometheus that scrapes the project (shiploop\n"
        "# prometheus-config); `shiploop up --prometheus` loads it by itself.\n"
    )
    return header + yaml.dump(body, Dumper=_Dumper, sort_keys=False, width=1_000_000, allow_unicode=True)
