"""The configuration reference, generated from the models so it cannot drift from them.

    python -m shiploop.spec.reference > docs/config-reference.md

Every field of shiploop.yaml and service.yaml, with its type, default and the
description written under it in the model (read from the models' source here:
the models do not keep it, see spec/base.py).
tests/unit/test_spec_reference.py fails when the committed file differs.
"""

from __future__ import annotations

import ast
import inspect
import json
import textwrap
import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic.functional_validators import BeforeValidator

from shiploop.spec.durations import _to_positive_seconds, _to_seconds, format_duration
from shiploop.spec.explain import INTERNAL_FIELDS
from shiploop.spec.models import ProjectSpec, ServiceSpec

HEADER = """\
# Configuration reference

Generated from the models in `shiploop/spec/` by `python -m shiploop.spec.reference`;
a test fails when this file and the models disagree. Durations are a number of
seconds or a text with units (`500ms`, `2s`, `5m`, `1m30s`). Keys starting with
`x-` at the top of a file are ignored (for YAML anchors); only `true`/`false`
are booleans.
"""


def _is_duration(metadata: list[Any]) -> bool:
    return any(isinstance(m, BeforeValidator) and m.func in (_to_seconds, _to_positive_seconds) for m in metadata)


def _bounds(metadata: list[Any]) -> str:
    low = high = ""
    for m in metadata:
        if isinstance(m, annotated_types.Ge):
            low = f"{m.ge}"
        elif isinstance(m, annotated_types.Gt):
            low = f">{m.gt}"
        elif isinstance(m, annotated_types.Le):
            high = f"{m.le}"
        elif isinstance(m, annotated_types.Lt):
            high = f"<{m.lt}"
    if not (low or high):
        return ""
    return f" ({low or '…'} to {high or '…'})"


def _type_name(annotation: Any, metadata: list[Any] | None = None) -> str:
    metadata = list(metadata or [])
    while get_origin(annotation) is Annotated:
        annotation, *extra = get_args(annotation)
        metadata += extra
    if _is_duration(metadata):
        return "duration"
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        rest = [a for a in get_args(annotation) if a is not type(None)]
        return " or ".join(_type_name(a) for a in rest)
    if origin is Literal:
        return " \\| ".join(f"`{v}`" for v in get_args(annotation))
    if origin is list:
        return f"list of {_type_name(get_args(annotation)[0])}"
    if origin is dict:
        key, value = get_args(annotation)
        return f"mapping of {_type_name(key)} to {_type_name(value)}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping"
    names = {int: "integer", float: "number", str: "string", bool: "boolean"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation))) + _bounds(metadata)


def _default(field: FieldInfo, duration: bool) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, BaseModel):
        return "see below"
    if isinstance(value, list) and value and all(isinstance(v, BaseModel) for v in value):
        return "`" + json.dumps([v.model_dump(mode="json", exclude_defaults=True) for v in value]) + "`"
    if duration and isinstance(value, int | float):
        return f"`{format_duration(float(value))}`"
    if isinstance(value, bool):
        return f"`{'true' if value else 'false'}`"
    return f"`{json.dumps(value)}`"


def _nested_model(annotation: Any) -> tuple[type[BaseModel], str] | None:
    """The model a field holds (directly, optionally, or as list items), and the path suffix."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        rest = [a for a in get_args(annotation) if a is not type(None)]
        return _nested_model(rest[0]) if len(rest) == 1 else None
    if origin is list:
        inner = _nested_model(get_args(annotation)[0])
        return (inner[0], "[]") if inner else None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, ""
    return None


def attribute_docstrings(model: type[BaseModel]) -> dict[str, str]:
    """The string written under each field in the class bodies of `model` and its bases."""
    docs: dict[str, str] = {}
    for cls in reversed(model.__mro__):
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)) or cls is BaseModel:
            continue
        try:
            source = textwrap.dedent(inspect.getsource(cls))
        except (OSError, TypeError):
            continue
        body = ast.parse(source).body[0]
        assert isinstance(body, ast.ClassDef)
        for stmt, after in zip(body.body, body.body[1:], strict=False):
            target: ast.expr | None = stmt.target if isinstance(stmt, ast.AnnAssign) else None
            if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
                target = stmt.targets[0]
            if (
                isinstance(target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[target.id] = inspect.cleandoc(after.value.value)
    return docs


def _section(model: type[BaseModel], path: str, out: list[str]) -> None:
    rows, nested = [], []
    docs = attribute_docstrings(model)
    for name, field in model.model_fields.items():
        if name in INTERNAL_FIELDS:
            continue
        duration = _is_duration(field.metadata)
        type_name = "duration" if duration else _type_name(field.annotation, field.metadata)
        description = " ".join((field.description or docs.get(name, "")).split()).replace("|", "\\|")
        rows.append(f"| `{name}` | {type_name} | {_default(field, duration)} | {description} |")
        inner = _nested_model(field.annotation)
        if inner:
            nested.append((inner[0], f"{path}{'.' if path else ''}{name}{inner[1]}"))
    title = f"`{path}`" if path else "top level"
    out += ["", f"### {title}", ""]
    doc = " ".join((model.__doc__ or "").split()) if model.__doc__ and "SpecModel" not in model.__doc__ else ""
    if doc and not doc.startswith(("A base class", "Usage docs")):
        out += [doc, ""]
    out += ["| key | type | default | meaning |", "|---|---|---|---|", *rows]
    for inner_model, inner_path in nested:
        _section(inner_model, inner_path, out)


def render_reference() -> str:
    out = [HEADER.rstrip("\n")]
    for file, model in (("shiploop.yaml", ProjectSpec), ("service.yaml", ServiceSpec)):
        out += ["", f"## {file}"]
        _section(model, "", out)
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(render_reference(), end="")
