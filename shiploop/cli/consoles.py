"""rich consoles made when first used, so that a command that prints no rich output never imports rich.

Importing rich.console costs ~35-45 ms of CPU (python -X importtime), about a
tenth of a whole CLI command; `shiploop -h`, `--version`, `logs` and `events`
need none of it (issue 8, item 6). Each module keeps its module-level
`console = LazyConsole(...)` and calls it as it would call a rich Console; rich
is imported, and the Console made with the same options, at the first call.
"""

from __future__ import annotations

from functools import cached_property
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.status import Status


class LazyConsole:
    """The part of rich.console.Console the CLI uses; `.real` is the Console itself (for rich.live)."""

    def __init__(self, **options: Any) -> None:
        self._options = options

    @cached_property
    def real(self) -> Console:
        from rich.console import Console

        return Console(**self._options)

    def print(self, *objects: Any, **options: Any) -> None:
        self.real.print(*objects, **options)

    def status(self, status: str) -> Status:
        return self.real.status(status)

    @property
    def is_terminal(self) -> bool:
        return self.real.is_terminal

    @property
    def file(self) -> IO[str]:
        return self.real.file
