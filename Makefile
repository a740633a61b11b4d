# striate — `make demo` trains LeNet-5 on Fashion-MNIST and records the run; `make test` runs the tests;
# `make ui` builds the web dashboard (Node 20 + npm) into the package.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_VERSION := 2.13.0
DEMO_STORE ?= striate-runs

UI_BUNDLE := src/striate/server/ui_dist/index.html
UI_SOURCES := ui/package.json ui/package-lock.json ui/index.html ui/vite.config.ts ui/tsconfig.json $(wildcard ui/src/*)

.PHONY: demo test lint data clean ui

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

# The dashboard bundle (served by `striate server` and `striate ui`); without Node it is skipped with a warning.
ui: $(UI_BUNDLE)

$(UI_BUNDLE): $(UI_SOURCES)
	@if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then \
		cd ui && npm ci --no-audit --no-fund && npm run build; \
	else \
		echo "warning: node/npm not found: the dashboard is not built (its page says so); install Node 20 and run make ui"; \
	fi

demo: data ui
	$(BIN)/striate train lenet5 -c examples/lenet5-fashion-mnist.yaml --store $(DEMO_STORE)
	@echo "see the run in the dashboard: $(BIN)/striate ui --store $(DEMO_STORE)   (open the URL it prints)"

test: $(VENV)/.installed-dev ui
	$(BIN)/python -m pytest

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/mypy src
	$(BIN)/lint-imports
	$(BIN)/python scripts/import_cycles.py striate

clean:
	rm -rf $(VENV) striate-runs .pytest_cache ui/node_modules src/striate/server/ui_dist
