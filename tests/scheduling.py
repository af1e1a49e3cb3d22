"""The order the parallel part of the suite runs in: the longest tests first, a test at a time.

The suite is CPU-bound on two cores, so its wall time is its CPU time divided by two, plus
whatever time the cores sit idle. With pytest-xdist's `worksteal`, they sat idle at the end:
each worker starts with a third of the collection, in order, and steals from the back of
another's queue, so the end-to-end tests (5-38 s each, first in the collection) stayed at
the front of one worker's queue and ran there one after another. In one run the last 35 s
ran a single rollout test, at 15-40% of the CPU (commit f29f87b, 227 s in all).

So (list scheduling, longest first): conftest.py sorts the collection by tier, end-to-end
first, the slow integration tests next, then the other integration tests, the unit tests
last (the slow ones first; `make test` runs that tier apart, at nice 19); and `LongestFirst`
hands it out a unit of work at a time to whichever worker is free.
A unit is one test, or a whole module when its tests share a module-scoped fixture (a
running daemon, say), which then runs once on one worker. What runs last is then short.
"""

from __future__ import annotations

import ast
from functools import cache
from itertools import zip_longest
from pathlib import Path

import pytest
from xdist.scheduler import LoadScopeScheduling


def run_rank(tier: str | None, slow: bool) -> int:
    """0: end-to-end, 1: slow integration, 2: other integration, 3: slow unit, 4: other unit tests."""
    if slow and tier in ("integration", "unit"):
        return {"integration": 1, "unit": 3}[tier]
    return {"e2e": 0, "integration": 2, "unit": 4}.get(tier or "", 2)


def run_order(ranks: dict[str, int]) -> dict[str, int]:
    """Each unit of work's place in the run, from its rank (`ranks` in collection order).

    The end-to-end tests alternate with the slow integration tests: the first mostly wait on
    rollout steps (three at once kept the two cores 50-65% busy for the first 80 s), the
    second mostly start daemons and CLI processes."""
    by_rank: list[list[str]] = [[] for _ in range(5)]
    for unit, rank in ranks.items():
        by_rank[rank].append(unit)
    first = [u for pair in zip_longest(by_rank[0], by_rank[1]) for u in pair if u is not None]
    return {unit: place for place, unit in enumerate(first + [u for rest in by_rank[2:] for u in rest])}


@cache
def shares_module_fixtures(module: Path) -> bool:
    """Does a fixture in this test module have scope="module"? (Only the module itself is read:
    tests/conftest.py keeps its fixtures function-scoped.)"""
    try:
        tree = ast.parse(module.read_text())
    except (OSError, SyntaxError):
        return False
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            for dec in node.decorator_list:
                if isinstance(dec, ast.Call) and any(
                    kw.arg == "scope" and isinstance(kw.value, ast.Constant) and kw.value.value == "module"
                    for kw in dec.keywords
                ):
                    return True
    return False


class LongestFirst(LoadScopeScheduling):
    """`--dist loadscope`, with a unit of work per test except in modules that share a module fixture,
    handed out in collection order (conftest.py's), not reordered by the size of the unit."""

    def __init__(self, config: pytest.Config, log: object | None = None) -> None:
        super().__init__(config, log)  # type: ignore[arg-type]
        config.option.loadscopereorder = False  # the collection's order is the run order
        self.rootpath = config.rootpath

    def _split_scope(self, nodeid: str) -> str:
        module = nodeid.split("::", 1)[0]
        return module if shares_module_fixtures(self.rootpath / module) else nodeid
