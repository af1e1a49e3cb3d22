"""The in-cluster loops' beat: one step, then wait the interval or until told to stop."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


async def every(interval_s: float, step: Callable[[], Awaitable[None]], stop: asyncio.Event) -> None:
    """Run `step` every `interval_s` until `stop` is set; a stop ends the wait at once, not at the next beat."""
    while not stop.is_set():
        await step()
        try:
            await asyncio.wait_for(stop.wait(), interval_s)
        except TimeoutError:
            pass
