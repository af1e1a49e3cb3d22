"""Durations as users write them ("500ms", "2s", "1m30s", "14d", 90) and as float seconds."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator

from shiploop.spec.issues import spec_issue

_UNITS: dict[str, float] = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
# "ms" before "m" so the alternation does not stop at the "m" of "500ms".
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|d|h|m|s)")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|d|h|m|s))+")
_ORDER = ["d", "h", "m", "s", "ms"]
DURATION_HINT = "write a number of seconds or use units ms, s, m, h, d, e.g. 500ms, 2s, 5m, 1m30s"


def parse_duration(value: object) -> float:
    """Seconds from a YAML value; raises ValueError with a user-facing message."""
    # bool is an int subclass; `timeout: true` is a mistake, not one second.
    if isinstance(value, bool) or value is None:
        raise ValueError(f"expected a duration, got {_show(value)}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _parse_text(value.strip())
    else:
        raise ValueError(f"expected a duration, got {_show(value)}")
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        raise ValueError(f"expected a finite duration, got {value!r}")
    if seconds < 0:
        raise ValueError(f"duration must not be negative, got {value!r}")
    return seconds


def _parse_text(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    if not _WHOLE.fullmatch(text):
        raise ValueError(f"invalid duration {text!r}")
    total = 0.0
    last = -1
    for number, unit in _PART.findall(text):
        rank = _ORDER.index(unit)
        # "30s1m" or "1m1m" is almost certainly a typo; refuse rather than guess.
        if rank <= last:
            raise ValueError(f"invalid duration {text!r}: units must go from largest to smallest, once each")
        last = rank
        total += float(number) * _UNITS[unit]
    return total


def format_duration(seconds: float) -> str:
    """The shortest readable form: 0.5 -> "500ms", 90 -> "1m30s", 15 -> "15s"."""
    if seconds < 1 and seconds != 0:
        return f"{seconds * 1000:g}ms"
    whole = int(seconds)
    if whole != seconds:
        return f"{seconds:g}s"
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else ""]
    parts += [f"{minutes}m" if minutes else "", f"{secs}s" if secs else ""]
    return "".join(parts) or "0s"


def _show(value: object) -> str:
    if value is None:
        return "nothing"
    return f"{type(value).__name__} {value!r}"


def _to_seconds(value: Any) -> float:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise spec_issue(str(exc), hint=DURATION_HINT) from None


def _to_positive_seconds(value: Any) -> float:
    seconds = _to_seconds(value)
    if seconds <= 0:
        raise spec_issue(f"duration must be more than 0, got {value!r}", hint=DURATION_HINT)
    return seconds


Duration = Annotated[float, BeforeValidator(_to_seconds)]
"""Seconds, >= 0, written as a number or "500ms" / "2s" / "1m30s"."""

PositiveDuration = Annotated[float, BeforeValidator(_to_positive_seconds)]
"""Seconds, > 0."""
