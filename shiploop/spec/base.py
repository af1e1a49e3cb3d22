"""The shared model base and small helpers the spec models use."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict

from shiploop.spec.issues import spec_issue


class SpecModel(BaseModel):
    # strict: YAML already gives real ints and bools; lax mode would quietly turn
    # `replicas: true` into 1 or `name: 123` into "123".
    # The string under a field is its description, from which docs/config-reference.md is
    # generated: shiploop/spec/reference.py reads it from the source when it is needed. Pydantic's
    # use_attribute_docstrings read the source of every model at each import instead: 90 ms of
    # every daemon's and CLI's start.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


def one_of_hint(word: str, choices: Iterable[str]) -> str:
    options = list(choices)
    return did_you_mean(word, options) or "use one of " + ", ".join(options)


def check_choice(value: str, choices: Iterable[str], what: str) -> str:
    options = list(choices)
    if value not in options:
        raise spec_issue(f"unknown {what} {value!r}", hint=one_of_hint(value, options))
    return value


def scalar_to_str(value: object) -> object:
    """YAML numbers and bools where a string is meant (env values, header values).

    Anything else passes through so the strict str check reports it.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value
