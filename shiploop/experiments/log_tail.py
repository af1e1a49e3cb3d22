"""Reading Envoy's experiment log (JSON lines) from where the last read stopped.

The position (file identity and offset) is saved in the store in the same
transaction as the sums the lines feed, so a daemon restart neither loses nor
double-counts a line. A rotated or truncated file (another inode, or shorter than
the offset) is read from its start; a partial last line waits for the next read.
An Envoy restart appends to the same file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from shiploop.store import Exposure

_MAX_READ = 8 << 20  # bytes per read: a backlog is folded over several ticks, not in one long transaction


@dataclass(frozen=True)
class Position:
    inode: int
    offset: int

    def dumps(self) -> str:
        return json.dumps({"inode": self.inode, "offset": self.offset})

    @classmethod
    def loads(cls, text: str | None) -> Position:
        if not text:
            return cls(0, 0)
        d = json.loads(text)
        return cls(int(d["inode"]), int(d["offset"]))


def read_from(path: Path, position: Position) -> tuple[list[Exposure], Position, int]:
    """The exposures of the complete lines after `position`, the new position, and lines skipped as unreadable."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return [], position, 0
    with f:
        st = os.fstat(f.fileno())
        offset = position.offset
        if st.st_ino != position.inode or st.st_size < offset:
            offset = 0  # rotated or truncated: a new file from its start
        f.seek(offset)
        data = f.read(_MAX_READ)
    end = data.rfind(b"\n")
    if end < 0:
        return [], Position(st.st_ino, offset), 0
    exposures: list[Exposure] = []
    skipped = 0
    for line in data[: end + 1].splitlines():
        exposure = parse_line(line)
        if exposure is None:
            skipped += line.strip() != b""
        else:
            exposures.append(exposure)
    return exposures, Position(st.st_ino, offset + end + 1), skipped


def parse_events(text: object) -> tuple[tuple[str, float | None], ...]:
    """`signup,purchase=12.50` -> (("signup", None), ("purchase", 12.5)); malformed values count as no value."""
    if not isinstance(text, str) or not text:
        return ()
    out: list[tuple[str, float | None]] = []
    for part in text.split(","):
        name, _, raw = part.strip().partition("=")
        name = name.strip().lower()
        if not name:
            continue
        value: float | None = None
        if raw.strip():
            try:
                value = float(raw)
            except ValueError:
                value = None
            if value is not None and value != value:  # NaN
                value = None
        out.append((name, value))
    return tuple(out)


def parse_line(line: bytes) -> Exposure | None:
    try:
        d = json.loads(line)
        if not isinstance(d, dict) or not d.get("unit") or d.get("arm") not in ("control", "treatment"):
            return None
        return Exposure(
            salt=str(d.get("exp") or ""),
            unit=str(d["unit"]),
            arm=str(d["arm"]),
            ts=float(d.get("t") or 0.0),
            status=int(d.get("status") or 0),
            ms=float(d.get("ms") or 0.0),
            events=parse_events(d.get("events")),
        )
    except (ValueError, TypeError):
        return None
