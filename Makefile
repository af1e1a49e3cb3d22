# A distribution build of Python 3.11+ when there is one (scripts/pick-python.sh says why).
PYTHON ?= $(shell sh scripts/pick-python.sh)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Some machines set PYTHONDONTWRITEBYTECODE=1 (this one and CI do). Then no .pyc is ever written:
# every CLI call, daemon and pytest worker compiled each module again from source (a daemon's
# imports took 2.9 s of CPU instead of 1.7 s), and on a fresh clone the parallel part of the
# suite ran 469 s instead of 343 s (`make test` 10:09 -> 7:48). The .pyc files go to the venv
# and to __pycache__/ in the checkout, both ignored by git.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: demo test units system faults types test-fast lint bench clean tools

# The venv is rebuilt only when pyproject.toml changes. uv installs the dependencies:
# 7 s against pip's 86 s on this 2-core machine, empty caches both; pip is the fallback.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q uv && VIRTUAL_ENV=$(VENV) $(BIN)/uv pip install -q -e '.[test]' \
		|| $(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/demo.py

# Four workers on two cores: the end-to-end tests mostly wait on rollout steps, and with three,
# the cores were 50-75% busy whenever three of them ran at once (81% over the whole part; 94%
# with four). Parallel part, same commit: 202 s with 3, 189-202 s with 4.
PYTEST_WORKERS ?= 4
# --dist loadscope, as tests/scheduling.py refines it: the longest tests first, handed out a test at
# a time to whichever worker is free, so what runs last is short (worksteal left one worker running
# rollout tests alone for the last ~35 s).

# checkov (tests/integration/test_k8s_checkov.py) pins packaging<24, older than pytest needs: its own venv.
# uv: 8 s against pip's 66 s. Its bytecode is compiled here, beside the fault tier, where the cores have
# time: compiled by its first run instead, checkov's test took 28 s in the CPU-bound parallel part, not 6 s.
CHECKOV_STAMP := .venv-checkov/.installed
$(CHECKOV_STAMP): $(STAMP)
	$(PYTHON) -m venv .venv-checkov
	$(BIN)/uv pip install -q --compile-bytecode --python .venv-checkov/bin/python 'checkov>=3.2,<4' \
		|| .venv-checkov/bin/pip install -q 'checkov>=3.2,<4'
	touch $(CHECKOV_STAMP)

test: $(STAMP) tools
	$(BIN)/ruff check shiploop tests bench examples
	@$(MAKE) --no-print-directory -j4 --output-sync=target units system

# The unit tier runs beside everything else, at the lowest priority: pure code, no processes of ours
# to time, so it takes the CPU the fault tests leave idle (they mostly wait) and hardly any they want.
# In the CPU-bound parallel part it had taken ~45 s of CPU. Its workers' ports are apart from the
# other tiers' (tests/conftest.py: a unit test binds blocks of ports to test the port picker).
units: $(STAMP)
	SHIPLOOP_TEST_PORTS=30000-32767 nice -n 19 $(BIN)/pytest -q -n 2 --dist loadscope tests/unit

# The integration and end-to-end tiers: the fault tier first, then the rest in parallel.
system: faults types
	$(BIN)/pytest -q -n $(PYTEST_WORKERS) --dist loadscope -m 'not serial' tests/integration tests/e2e

# The fault tier (-m serial) counts lost requests, so it never shares the CPU with the parallel
# part (only with the unit tier at nice 19, which yields it). It mostly waits (two 10 s faults,
# restarts, about 0.4 of a core per module), so `make test` runs it first, a worker per fault module,
# while mypy checks and checkov's venv is built beside it: 43 s for all three instead of 72 + 20 + 10
# one after the other. Its workers collect tests/e2e only, where the fault tests must be (conftest.py
# says so): collecting the whole suite imported scipy, statsmodels and the rest three more times.
faults: $(STAMP)
	$(BIN)/pytest -q -n 3 --dist loadfile -m serial tests/e2e

types: $(STAMP) $(CHECKOV_STAMP)
	$(BIN)/mypy

# Unit and integration tiers without the slow end-to-end tests.
test-fast: $(STAMP) $(CHECKOV_STAMP) tools
	$(BIN)/pytest -q -n $(PYTEST_WORKERS) --dist loadscope -m 'not slow' tests/unit tests/integration

# Debian packages some tests use (prometheus, chromium): installed when missing, as root.
tools:
	@bash scripts/ensure-tools.sh

lint: $(STAMP)
	$(BIN)/ruff check shiploop tests bench examples
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m bench.gateway_overhead
	$(BIN)/python -m bench.reconfigure
	$(BIN)/python -m bench.scale
	$(BIN)/python -m bench.rollouts
	$(BIN)/python -m bench.metrics_cost
	$(BIN)/python -m bench.dashboard_cost

clean:
	rm -rf $(VENV) .venv-checkov .shiploop
