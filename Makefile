# striate — `make demo` trains LeNet-5 on Fashion-MNIST and records the run; `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_VERSION := 2.13.0
DEMO_STORE ?= striate-runs

.PHONY: demo test lint data clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first: the pinned CPU wheel where the machine has it, else the ordinary release.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q "torch==$(TORCH_VERSION)" || $(BIN)/pip install -q torch
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

data: $(VENV)/.installed
	@BIN=$(BIN) ./scripts/ensure-fashion-mnist.sh

demo: data
	$(BIN)/striate train lenet5 -c examples/lenet5-fashion-mnist.yaml --store $(DEMO_STORE)

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/mypy src
	$(BIN)/lint-imports
	$(BIN)/python scripts/import_cycles.py striate

clean:
	rm -rf $(VENV) striate-runs .pytest_cache
