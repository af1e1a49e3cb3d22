"""How validators report a user's mistake, and the error the loader raises for it."""

from __future__ import annotations

from pydantic_core import PydanticCustomError

from shiploop.errors import ShiploopError

ISSUE_TYPE = "shiploop_spec"


def spec_issue(message: str, *, hint: str | None = None, field: str | None = None) -> PydanticCustomError:
    """A validation error the loader turns into one ShiploopError line.

    The message travels in the context, not the template, because pydantic would
    try to format braces in it (a regex like `a{2}` would break). `field` names a
    sub-field when a model-level check wants to point at one key.
    """
    return PydanticCustomError(ISSUE_TYPE, "{message}", {"message": message, "hint": hint or "", "field": field or ""})


class SpecError(ShiploopError):
    """A ShiploopError that also keeps where in which file the mistake is."""

    def __init__(
        self,
        message: str,
        *,
        file: str,
        line: int | None = None,
        field: str = "",
        hint: str | None = None,
    ) -> None:
        self.file = file
        self.lineno = line
        self.field = field
        # The file's other problems, so one run shows them all (still one line).
        self.others: list[SpecError] = []
        where = f"{file}:{line}" if line is not None else file
        super().__init__(f"{field}: {message}" if field else message, where=where, hint=hint)

    def line(self) -> str:
        text = super().line()
        others = getattr(self, "others", [])
        if others:
            text += f"; and {len(others)} more: " + "; ".join(o.line() for o in others)
        return text

    def __str__(self) -> str:
        return self.line()
