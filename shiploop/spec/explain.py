"""Pydantic errors as one line a user can act on."""

from __future__ import annotations

import re
import types
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import ErrorDetails

from shiploop.spec.base import did_you_mean
from shiploop.spec.issues import ISSUE_TYPE
from shiploop.spec.yamlsrc import Loc

# Fields the loader fills in; a user writing them gets "unknown field".
INTERNAL_FIELDS = frozenset({"directory", "root", "services"})

_MISSING_HINTS: dict[str, str] = {
    "name": "add name: <lowercase-name>",
    "command": 'add command: ["python", "app.py"]',
    "run": 'add run: {command: ["python", "app.py"]}',
    "tolerance": "add tolerance: 0.01",
    "metric": "add metric: error_rate, latency or app:NUM/DEN",
    "max": "add max: 0.2 (or a duration such as 2s for latency)",
    "url": "add url: http://...",
    "when": "add when: pre-rollout, step or post-rollout",
    "header": "add header: x-beta",
    "value": 'add value: "1"',
}


def field_path(loc: Loc) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def explain(error: ErrorDetails, root: type[BaseModel]) -> tuple[Loc, str, str | None]:
    """(location, message, hint) for one pydantic error."""
    kind = error["type"]
    # Dict key errors carry a synthetic "[key]" part after the key itself.
    loc: Loc = tuple(p for p in error["loc"] if p != "[key]")
    ctx: dict[str, Any] = dict(error.get("ctx") or {})
    value = error.get("input")

    if kind == ISSUE_TYPE:
        sub = tuple(int(p) if p.isdigit() else p for p in ctx["field"].split(".")) if ctx["field"] else ()
        return (*loc, *sub), ctx["message"], ctx["hint"] or None
    if kind == "extra_forbidden":
        name = str(loc[-1])
        allowed = [f for f in _fields_at(root, loc[:-1]) if f not in INTERNAL_FIELDS]
        hint = did_you_mean(name, allowed) or ("valid fields: " + ", ".join(allowed) if allowed else None)
        return loc, f"unknown field '{name}'", hint
    if kind == "missing":
        return loc, "required field is missing", _MISSING_HINTS.get(str(loc[-1])) if loc else None
    if kind == "literal_error":
        options = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        shown = repr(value) if isinstance(value, str) else _show(value)
        message = f"unknown value {shown}, expected one of {', '.join(options)}"
        return loc, message, did_you_mean(str(value), options)
    if kind in _TYPE_NAMES:
        return loc, f"expected {_TYPE_NAMES[kind]}, got {_show(value)}", None
    if kind in _BOUNDS:
        word, key = _BOUNDS[kind]
        return loc, f"must be {word} {ctx[key]}, got {_show(value)}", None
    if kind == "too_short":
        return loc, "must not be empty", None
    if kind == "string_too_short":
        return loc, "must not be an empty string", None
    if kind == "value_error":
        return loc, str(error["msg"]).removeprefix("Value error, "), None
    return loc, str(error["msg"]), None


_TYPE_NAMES = {
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "tuple_type": "a list",
    "dict_type": "a mapping (key: value)",
    "model_type": "a mapping (key: value)",
    "model_attributes_type": "a mapping (key: value)",
    "is_instance_of": "a mapping (key: value)",
}

_BOUNDS = {
    "greater_than_equal": ("at least", "ge"),
    "greater_than": ("more than", "gt"),
    "less_than_equal": ("at most", "le"),
    "less_than": ("less than", "lt"),
}


def _show(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _unwrap(annotation: Any) -> Any:
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            rest = [a for a in get_args(annotation) if a is not type(None)]
            annotation = rest[0] if len(rest) == 1 else Any
        else:
            return annotation


def _fields_at(root: type[BaseModel], loc: Loc) -> list[str]:
    """The field names of the model found at `loc`, for did-you-mean."""
    annotation: Any = root
    for part in loc:
        annotation = _unwrap(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            info = annotation.model_fields.get(part) if isinstance(part, str) else None
            if info is None:
                return []
            annotation = info.annotation
        elif get_origin(annotation) in (list, dict):
            annotation = get_args(annotation)[-1]
        else:
            return []
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return list(annotation.model_fields)
    return []
