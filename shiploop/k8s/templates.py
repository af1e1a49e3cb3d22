"""A service's `k8s/` folder: Jinja2 templates of Kubernetes objects, merged over the generated ones.

Each file (`*.yaml`, `*.yml`, `*.j2`) is rendered once per version with the
variables below and may hold several YAML documents. A document whose kind
(and name, when it gives one) matches a generated object of that version is
merged into it: mappings key by key, lists of named items (containers, env,
ports, volumes) item by item by name, any other value replaced; `null` removes
a key. A document that matches nothing is added as a new object.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
import yaml

from shiploop.errors import Invalid

FOLDER = "k8s"
SUFFIXES = (".yaml", ".yml", ".j2")


def template_files(service_dir: Path) -> list[Path]:
    folder = service_dir / FOLDER
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(SUFFIXES))


def render_file(path: Path, variables: dict[str, Any]) -> list[dict[str, Any]]:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
    try:
        text = env.from_string(path.read_text()).render(**variables)
    except jinja2.TemplateError as e:
        line = getattr(e, "lineno", None)
        where = f"{path}:{line}" if line else str(path)
        raise Invalid(f"template error: {e}", where=where, hint="variables: " + ", ".join(sorted(variables))) from None
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        raise Invalid(f"the rendered template is not YAML: {e}".replace("\n", " "), where=str(path)) from None
    for d in docs:
        if not isinstance(d, dict) or "kind" not in d:
            raise Invalid("every document needs a kind (e.g. kind: Deployment)", where=str(path))
    return docs


def _named(items: list[Any]) -> bool:
    return bool(items) and all(isinstance(i, dict) and "name" in i for i in items)


def merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for key, value in over.items():
            if value is None:
                out.pop(key, None)
            else:
                out[key] = merge(base.get(key), value) if key in base else value
        return out
    if isinstance(base, list) and isinstance(over, list) and _named(base) and _named(over):
        out_list = list(base)
        index = {item["name"]: i for i, item in enumerate(out_list)}
        for item in over:
            if item["name"] in index:
                out_list[index[item["name"]]] = merge(out_list[index[item["name"]]], item)
            else:
                out_list.append(item)
        return out_list
    return over


def apply(objects: list[dict[str, Any]], overlays: list[dict[str, Any]], where: Path) -> list[dict[str, Any]]:
    """`objects` (one version's) with each overlay merged into its match, or added."""
    out = list(objects)
    for overlay in overlays:
        name = (overlay.get("metadata") or {}).get("name")
        matches = [
            i
            for i, o in enumerate(out)
            if o["kind"] == overlay["kind"] and (name is None or o["metadata"]["name"] == name)
        ]
        if len(matches) > 1:
            raise Invalid(
                f"a {overlay['kind']} without a name matches {len(matches)} objects",
                where=str(where),
                hint="give it metadata.name",
            )
        if matches:
            out[matches[0]] = merge(out[matches[0]], overlay)
        else:
            out.append(overlay)
    return out
