"""What Envoy accepts, checked before a value reaches the store.

Envoy refusing a config leaves the service wedged until the value is gone, so
every value that ends up in Envoy's config is held to Envoy's own rules here,
once, for service.yaml (through the models' validators) and for the API
(header routes). Each check returns the value to use or raises `Invalid`.
"""

from __future__ import annotations

import re

import re2

from shiploop.errors import Invalid

# RFC 9110 5.6.2: a field name is a token, 1*tchar.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# RFC 9110 5.5: a field value holds visible characters, spaces, tabs and obs-text;
# CR, LF and NUL would split or end the header.
_BAD_VALUE_CHAR = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
MAX_HEADER_NAME = 256
MAX_HEADER_VALUE = 4096
# Envoy 1.40 refuses a regex whose RE2 program is larger than 100 (its default
# `re2.max_program_size.error_level`; measured: size 1652 was rejected).
MAX_REGEX_PROGRAM_SIZE = 100
# Envoy keeps durations as int64 nanoseconds: 9,223,372,035 s was accepted, 1e10 s refused.
MAX_DURATION_S = 9_223_372_035.0
# Durations are rendered in milliseconds; less would become 0, which Envoy reads
# as "no timeout" or refuses (outlier intervals).
MIN_DURATION_S = 0.001


def header_name(name: str) -> str:
    if not _TOKEN.fullmatch(name) or len(name) > MAX_HEADER_NAME:
        raise Invalid(
            f"invalid header name {name[:80]!r}: use letters, digits and !#$%&'*+-.^_`|~ "
            f"(at most {MAX_HEADER_NAME} characters)",
            hint="e.g. x-tenant",
        )
    return name.lower()


def header_value(value: str) -> str:
    if _BAD_VALUE_CHAR.search(value) or len(value) > MAX_HEADER_VALUE:
        raise Invalid(
            f"invalid header value {value[:80]!r}: no control characters (CR, LF, NUL), "
            f"at most {MAX_HEADER_VALUE} characters",
            hint="e.g. x-tenant=acme",
        )
    if value != value.strip(" \t"):
        raise Invalid(
            f"header value {value[:80]!r} starts or ends with a space, which HTTP strips: it would never match",
            hint=f"use {value.strip(' ' + chr(9))!r}",
        )
    return value


def regex(pattern: str) -> str:
    options = re2.Options()
    options.log_errors = False
    if not pattern:
        raise Invalid("the regex is empty", hint="e.g. ^/items/[0-9]+$")
    try:
        compiled = re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise Invalid(
            f"invalid regex {pattern!r} (RE2 syntax, as Envoy uses): {reason}",
            hint="lookarounds and backreferences are not supported; e.g. ^/items/[0-9]+$",
        ) from None
    if compiled.programsize > MAX_REGEX_PROGRAM_SIZE:
        raise Invalid(
            f"regex {pattern[:80]!r} is too complex for Envoy (RE2 program size "
            f"{compiled.programsize} > {MAX_REGEX_PROGRAM_SIZE})",
            hint="use a simpler pattern, or several routes with prefixes",
        )
    return pattern


def duration(seconds: float) -> float:
    if not MIN_DURATION_S <= seconds <= MAX_DURATION_S:
        raise Invalid(
            f"duration {seconds:g}s is outside what Envoy accepts ({MIN_DURATION_S * 1000:g}ms to "
            f"{MAX_DURATION_S:.0f}s)",
            hint="e.g. 15s",
        )
    return seconds


def url_path(value: str) -> str:
    if _BAD_VALUE_CHAR.search(value):
        raise Invalid(f"{value[:80]!r} contains control characters", hint="e.g. /items/")
    return value
