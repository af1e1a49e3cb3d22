"""The load generator's own errors: it is a library of its own, used by benchmarks and tests too.

A LoadError is a mistake in what was asked (a rate, a URL, a header); its
`line()` is one line with a hint. The CLI turns it into a usage error.
"""

from __future__ import annotations


class LoadError(ValueError):
    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(self.line())

    def line(self) -> str:
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message
