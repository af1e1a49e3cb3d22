"""docs/config-reference.md is the generator's output, every field is documented, and a file's errors come at once."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from pydantic import BaseModel

from shiploop.spec import ProjectSpec, ServiceSpec, SpecError, load_service
from shiploop.spec.explain import INTERNAL_FIELDS
from shiploop.spec.reference import _nested_model, attribute_docstrings, render_reference

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "config-reference.md"


def test_the_committed_reference_is_the_generators_output():
    assert REFERENCE.read_text() == render_reference(), (
        "docs/config-reference.md is stale: python -m shiploop.spec.reference > docs/config-reference.md"
    )


def _models(model: type[BaseModel], seen: set[type[BaseModel]]) -> set[type[BaseModel]]:
    seen.add(model)
    for field in model.model_fields.values():
        inner = _nested_model(field.annotation)
        if inner and inner[0] not in seen:
            _models(inner[0], seen)
    return seen


def test_every_field_has_a_description_and_appears_in_the_reference():
    text = render_reference()
    undocumented = []
    for model in _models(ProjectSpec, set()) | _models(ServiceSpec, set()):
        docs = attribute_docstrings(model)
        for name in model.model_fields:
            if name in INTERNAL_FIELDS:
                continue
            if not docs.get(name):
                undocumented.append(f"{model.__name__}.{name}")
            assert f"| `{name}` |" in text
    assert not undocumented, "fields without a docstring: " + ", ".join(sorted(undocumented))
    for key in ("regex", "host", "methods", "headers", "circuit_breaker", "outlier_detection", "min_samples",
                "require_noninferiority", "match", "webhooks", "alerts", "defaults"):  # fmt: skip
        assert f"`{key}`" in text, key


def test_all_errors_of_a_file_come_in_one_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "svc" / "service.yaml"
    path.parent.mkdir()
    path.write_text(
        textwrap.dedent("""\
            name: hello
            run:
              command: [python, app.py]
            replicas: 99
            health:
              pathh: /up
            rollout:
              alpha: 2
              steps: [50, 10]
        """)
    )
    with pytest.raises(SpecError) as info:
        load_service(path)
    err = info.value
    line = err.line()
    assert "\n" not in line
    assert (err.lineno, err.field) == (6, "health.pathh")  # the typo leads
    assert [(o.lineno, o.field) for o in err.others] == [(4, "replicas"), (8, "rollout.alpha"), (9, "rollout.steps")]
    for fragment in ("unknown field 'pathh'", "replicas: must be at most 50", "rollout.alpha", "steps must increase"):
        assert fragment in line, line
    assert "and 3 more" in line


def test_a_typo_is_not_also_reported_as_a_missing_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "svc" / "service.yaml"
    path.parent.mkdir()
    path.write_text("nmae: hello\nrun:\n  command: [python, app.py]\n")
    with pytest.raises(SpecError) as info:
        load_service(path)
    assert "unknown field 'nmae'" in info.value.line() and info.value.others == []
