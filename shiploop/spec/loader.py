"""Load shiploop.yaml and every service.yaml under a project root."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from shiploop.spec.explain import INTERNAL_FIELDS, explain, field_path
from shiploop.spec.issues import SpecError
from shiploop.spec.models import ProjectDefaults, ProjectSpec, ServiceSpec
from shiploop.spec.yamlsrc import Document, YamlProblem, parse

PROJECT_FILE = "shiploop.yaml"
SERVICE_FILE = "service.yaml"
_SKIP_DIRS = frozenset({".shiploop", ".git", ".venv", "node_modules", "__pycache__"})

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class _Loaded:
    spec: ServiceSpec
    file: str
    doc: Document

    @property
    def wrote_routes(self) -> bool:
        return isinstance(self.doc.data, dict) and "routes" in self.doc.data


def display_path(path: Path) -> str:
    """The path as a user would type it: relative to the working directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


def load_project(root: Path, *, require_services: bool = True) -> ProjectSpec:
    """The project at `root` with all its services, sorted by name."""
    # Absolute, so a daemon that changes directory still finds the services.
    root = Path(root).resolve()
    project_file = root / PROJECT_FILE
    if not project_file.is_file():
        raise SpecError(
            f"no {PROJECT_FILE} in {display_path(root)}",
            file=display_path(project_file),
            hint="run `shiploop init` to create a project here, or cd into one",
        )
    shown = display_path(project_file)
    doc = _read(project_file, shown, "a project needs at least name: <project-name>")
    project = _validate(ProjectSpec, doc, shown, context=None)

    loaded = [_load(path, project.defaults) for path in find_service_files(root)]
    if not loaded and require_services:
        raise SpecError(
            f"project '{project.name}' has no services",
            file=shown,
            line=doc.line_of(("name",)),
            hint="add a subdirectory with a service.yaml, e.g. hello/service.yaml",
        )
    _check_unique_names(loaded)
    _check_route_conflicts(loaded)
    services = {item.spec.name: item.spec for item in sorted(loaded, key=lambda item: item.spec.name)}
    return project.model_copy(update={"root": root, "services": services})


def load_service(path: Path, defaults: ProjectDefaults | None = None) -> ServiceSpec:
    """One service from its service.yaml (or its directory)."""
    path = Path(path).resolve()
    if path.is_dir():
        path = path / SERVICE_FILE
    return _load(path, defaults or ProjectDefaults()).spec


def find_service_files(root: Path) -> list[Path]:
    """Every service.yaml below `root`, not descending into a service's own directory.

    A service directory is snapshotted whole as a version, so a service inside
    another would silently become part of its parent's content.
    """
    found: list[Path] = []
    for directory, subdirs, files in os.walk(root):
        here = Path(directory)
        if here != Path(root) and SERVICE_FILE in files:
            found.append(here / SERVICE_FILE)
            subdirs.clear()
            continue
        subdirs[:] = sorted(d for d in subdirs if d not in _SKIP_DIRS and not d.startswith("."))
    return sorted(found)


def _load(path: Path, defaults: ProjectDefaults) -> _Loaded:
    shown = display_path(path)
    if not path.is_file():
        raise SpecError(f"no {SERVICE_FILE} at {shown}", file=shown, hint="check the path")
    doc = _read(path, shown, 'a service needs at least name and run: {command: ["python", "app.py"]}')
    spec = _validate(ServiceSpec, doc, shown, context={"defaults": defaults})
    return _Loaded(spec.model_copy(update={"directory": path.parent}), shown, doc)


def _read(path: Path, shown: str, empty_hint: str) -> Document:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SpecError("file is not UTF-8 text", file=shown, hint="save it as UTF-8") from None
    except OSError as exc:
        raise SpecError(f"cannot read file: {exc.strerror}", file=shown) from None
    try:
        doc = parse(text)
    except YamlProblem as exc:
        raise SpecError(exc.message, file=shown, line=exc.line, hint=exc.hint) from None
    if doc.data is None:
        raise SpecError("file is empty", file=shown, line=1, hint=empty_hint)
    if not isinstance(doc.data, dict):
        kind = "a list" if isinstance(doc.data, list) else f"{type(doc.data).__name__} {doc.data!r}"
        raise SpecError(
            f"expected a mapping of fields at the top level, got {kind}",
            file=shown,
            line=doc.line_of(()),
            hint="start with `name: ...` at the beginning of a line",
        )
    # Top-level "x-" keys are free for YAML anchors, as in docker-compose files.
    doc.data = {k: v for k, v in doc.data.items() if not (isinstance(k, str) and k.startswith("x-"))}
    for key in INTERNAL_FIELDS & set(doc.data):
        raise SpecError(f"unknown field '{key}'", file=shown, line=doc.line_of((key,)), field=key)
    return doc


def _validate(model: type[M], doc: Document, shown: str, context: dict[str, object] | None) -> M:
    try:
        return model.model_validate(doc.data, context=context)
    except ValidationError as exc:
        raise _first_problem(exc, model, doc, shown) from None


def _first_problem(exc: ValidationError, model: type[BaseModel], doc: Document, shown: str) -> SpecError:
    """Every problem of the file, in one error: the first (by kind, then line) leads, the others follow."""
    explained = [explain(error, model) for error in exc.errors()]
    # A misspelt key also shows up as a missing field beside it; the typo is the real story.
    typo_parents = {loc[:-1] for loc, message, _ in explained if message.startswith("unknown field")}
    explained = [
        item for item in explained if not (item[1].endswith("is missing") and item[0][:-1] in typo_parents)
    ]

    def rank(item: tuple[tuple[str | int, ...], str, str | None]) -> tuple[int, int]:
        loc, message, _ = item
        order = 0 if message.startswith("unknown field") else 2 if message.endswith("is missing") else 1
        return order, doc.line_of(loc) or 0

    problems = []
    seen: set[tuple[object, ...]] = set()
    for loc, message, hint in sorted(explained, key=rank):
        if (loc, message) in seen:
            continue
        seen.add((loc, message))
        problems.append(SpecError(message, file=shown, line=doc.line_of(loc), field=field_path(loc), hint=hint))
    first, *others = problems
    first.others = sorted(others, key=lambda e: e.lineno or 0)
    return first


def _check_unique_names(loaded: list[_Loaded]) -> None:
    first: dict[str, _Loaded] = {}
    for item in loaded:
        name = item.spec.name
        if name in first:
            other = first[name]
            raise SpecError(
                f"service name '{name}' is already used by {other.file}:{other.doc.line_of(('name',))}",
                file=item.file,
                line=item.doc.line_of(("name",)),
                field="name",
                hint="service names must be unique in a project; rename one of them",
            )
        first[name] = item


def _route_line(item: _Loaded, index: int) -> int | None:
    # A default route has no line of its own; the service name is what made it.
    if item.wrote_routes:
        return item.doc.line_of(("routes", index))
    return item.doc.line_of(("name",))


def _check_route_conflicts(loaded: list[_Loaded]) -> None:
    owners: dict[tuple[object, ...], tuple[_Loaded, int]] = {}
    for item in loaded:
        for index, route in enumerate(item.spec.routes):
            key = route.match_key()
            if key in owners:
                other, other_index = owners[key]
                raise SpecError(
                    f"route {route.describe()} is claimed by both service '{other.spec.name}' "
                    f"({other.file}:{_route_line(other, other_index)}) and service '{item.spec.name}' "
                    f"({item.file}:{_route_line(item, index)})",
                    file=item.file,
                    line=_route_line(item, index),
                    field=f"routes[{index}]" if item.wrote_routes else "name",
                    hint="give one of them a different prefix, host, methods or headers",
                )
            owners[key] = (item, index)


__all__ = ["PROJECT_FILE", "SERVICE_FILE", "find_service_files", "load_project", "load_service"]
