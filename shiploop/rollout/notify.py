"""Webhooks (gates a rollout waits on) and alerts (messages it sends)."""

from __future__ import annotations

from typing import Any

import httpx

from shiploop.spec import Alert, Webhook


async def call_webhooks(hooks: list[Webhook], when: str, payload: dict[str, Any]) -> str | None:
    """Call the hooks for `when`; the first failure's description, or None if all passed."""
    for hook in hooks:
        if hook.when != when:
            continue
        try:
            async with httpx.AsyncClient(timeout=hook.timeout) as http:
                r = await http.post(hook.url, json={**payload, "phase": when})
        except httpx.HTTPError as e:
            return f"{when} webhook {hook.url} failed: {type(e).__name__}"
        if not 200 <= r.status_code < 300:
            return f"{when} webhook {hook.url} answered {r.status_code}"
    return None


async def send_alerts(alerts: list[Alert], event: str, text: str, payload: dict[str, Any]) -> list[str]:
    """Post a Slack-compatible {"text": ...} body to the alerts that want `event`; returns failures."""
    failures = []
    for alert in alerts:
        if event not in alert.on:
            continue
        try:
            async with httpx.AsyncClient(timeout=5.0) as http:
                r = await http.post(alert.url, json={"text": text, "event": event, **payload})
            if r.status_code >= 300:
                failures.append(f"alert {alert.url} answered {r.status_code}")
        except httpx.HTTPError as e:
            failures.append(f"alert {alert.url} failed: {type(e).__name__}")
    return failures


class HttpNotifier:
    """The Notifier the daemon uses: webhooks and alerts over HTTP."""

    async def webhooks(self, hooks: list[Webhook], when: str, payload: dict[str, Any]) -> str | None:
        return await call_webhooks(hooks, when, payload)

    async def alerts(self, alerts: list[Alert], event: str, text: str, payload: dict[str, Any]) -> list[str]:
        return await send_alerts(alerts, event, text, payload)
