"""The one error type a user's mistake raises.

A ShiploopError renders as a single line: what is wrong, where, and what to do.
The CLI prints it without a traceback and exits 2. Bugs raise anything else.
"""

from __future__ import annotations


class ShiploopError(Exception):
    def __init__(self, message: str, *, where: str | None = None, hint: str | None = None) -> None:
        self.message = message
        self.where = where
        self.hint = hint
        super().__init__(self.line())

    def line(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        if self.hint:
            text += f" (hint: {self.hint})"
        return text.replace("\n", " ")
