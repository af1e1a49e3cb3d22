"""The package layers: no cycles, and no import against the documented order.

The order is docs/architecture.md's; a package may import only packages below
it (and the bottom-layer modules). An import inside a function counts too: it
is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "shiploop"

# Bottom first. Modules on one row may import each other only as listed in BOTTOM_ORDER.
LAYERS: list[set[str]] = [
    {"errors", "logsetup", "loopback", "procs", "naming", "paths", "contract"},
    {"spec"},
    {"versions"},
    {"images"},
    {"store"},
    {"analysis"},
    {"runtime"},
    {"gateway"},
    {"metrics"},
    {"loadgen"},
    {"tunnel"},
    {"server"},
    {"rollout"},
    {"experiments"},
    {"telemetry"},
    {"k8s"},
    {"daemon"},
    {"cli"},
]
# Each may import only those before it.
BOTTOM_ORDER = ["errors", "logsetup", "loopback", "procs", "naming", "paths", "contract"]


def _unit(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "shiploop" else None


def imports_by_unit() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        unit = rel.parts[0].removesuffix(".py")
        if unit == "__init__":
            continue
        deps = graph.setdefault(unit, set())
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                dep = _unit(name)
                if dep and dep != unit:
                    deps.add(dep)
    return graph


def rank(unit: str) -> int:
    for i, layer in enumerate(LAYERS):
        if unit in layer:
            return i
    raise AssertionError(f"shiploop/{unit} is in no layer: add it to LAYERS and docs/architecture.md")


def test_every_import_points_down_the_layers():
    wrong = []
    for unit, deps in imports_by_unit().items():
        for dep in deps:
            if unit in BOTTOM_ORDER and dep in BOTTOM_ORDER:
                if BOTTOM_ORDER.index(dep) >= BOTTOM_ORDER.index(unit):
                    wrong.append(f"{unit} -> {dep}")
            elif rank(dep) >= rank(unit):
                wrong.append(f"{unit} -> {dep}")
    assert not wrong, "imports against the layer order: " + ", ".join(sorted(wrong))


def test_no_cycles_between_packages():
    graph = imports_by_unit()
    seen: dict[str, int] = {}  # 1: on the stack, 2: done

    def visit(unit: str, stack: list[str]) -> None:
        seen[unit] = 1
        for dep in sorted(graph.get(unit, ())):
            if seen.get(dep) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*stack[stack.index(dep) :], dep]))
            if dep not in seen:
                visit(dep, [*stack, dep])
        seen[unit] = 2

    for unit in sorted(graph):
        if unit not in seen:
            visit(unit, [unit])


def test_the_walker_sees_real_imports():
    # The walker must find real imports, or the two tests above pass on nothing.
    graph = imports_by_unit()
    assert "server" in graph["daemon"] and "spec" in graph["server"]
