"""`GET /metrics` on the daemon's API: open to reads like the rest of it (behind the same Host check)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from shiploop.telemetry.collector import exposition, registry_for
from shiploop.telemetry.gather import StateReader


def mount_metrics(app: FastAPI, reader: StateReader) -> None:
    registry = registry_for(reader.snapshot)

    # Runs on the event loop, like every other read: the store's connection belongs to its thread.
    async def metrics() -> Response:
        return Response(exposition(registry), media_type=CONTENT_TYPE_LATEST)

    app.add_api_route("/metrics", metrics, methods=["GET"], include_in_schema=False)
