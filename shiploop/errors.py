"""The error taxonomy: what went wrong, in one line, and who has to act.

A ShiploopError renders as a single line: what is wrong, where, and what to do.
Its subclasses say which kind of failure it is, so the API maps each to one
HTTP status and the CLI to one exit code, in one place each:

| class            | HTTP | CLI exit | meaning                                         |
|------------------|------|----------|-------------------------------------------------|
| Invalid          | 422  | 2        | the user's input is wrong (the default)         |
| NotFound         | 404  | 2        | names something that does not exist             |
| Conflict         | 409  | 2        | valid, but not now (a rollout owns the service) |
| GatewayRejected  | 502  | 1        | Envoy refused a config we produced              |
| GatewayTimeout   | 504  | 1        | Envoy did not confirm in time                   |
| Unavailable      | 503  | 1        | a part we need is down (store, daemon)          |

Bugs raise anything else and reach the user as one line naming the log.
"""

from __future__ import annotations

from typing import ClassVar


class ShiploopError(Exception):
    http_status: ClassVar[int] = 422
    exit_code: ClassVar[int] = 2  # 2: the user can fix it; 1: shiploop or its parts failed

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


class Invalid(ShiploopError):
    """The user's input is wrong."""


class NotFound(ShiploopError):
    http_status = 404


class Conflict(ShiploopError):
    http_status = 409


class GatewayRejected(ShiploopError):
    http_status = 502
    exit_code = 1


class GatewayTimeout(ShiploopError):
    http_status = 504
    exit_code = 1


class Unavailable(ShiploopError):
    http_status = 503
    exit_code = 1


ERROR_KINDS: dict[str, type[ShiploopError]] = {
    cls.__name__: cls
    for cls in (ShiploopError, Invalid, NotFound, Conflict, GatewayRejected, GatewayTimeout, Unavailable)
}


def error_kind(exc: ShiploopError) -> str:
    """The taxonomy name of an error: its own class or the nearest one above that this module defines."""
    for cls in type(exc).__mro__:
        if cls.__name__ in ERROR_KINDS and ERROR_KINDS[cls.__name__] is cls:
            return cls.__name__
    return "ShiploopError"
