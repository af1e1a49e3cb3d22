PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint bench clean

# The venv is rebuilt only when pyproject.toml changes.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/demo.py

test: $(STAMP)
	$(BIN)/ruff check shiploop tests bench examples
	$(BIN)/mypy
	$(BIN)/pytest -q

# Unit and integration tiers without the slow end-to-end tests.
test-fast: $(STAMP)
	$(BIN)/pytest -q -m 'not slow' tests/unit tests/integration

lint: $(STAMP)
	$(BIN)/ruff check shiploop tests bench examples
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m bench.gateway_overhead
	$(BIN)/python -m bench.reconfigure
	$(BIN)/python -m bench.scale
	$(BIN)/python -m bench.rollouts
	$(BIN)/python -m bench.metrics_cost

clean:
	rm -rf $(VENV) .shiploop
