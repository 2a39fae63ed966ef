# Self-documenting Makefile: `make help` lists the targets.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help run test test-fast bench lint fmt clean venv

help: ## Show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required (set PYTHON=python3.11)")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP) ## Create .venv and install the project (done automatically by run/test)

run: $(STAMP) ## Run the whole system against the built-in simulator (embedded Postgres, no keys needed)
	$(PY) run.py $(ARGS)

test: $(STAMP) ## Run the test suite (unit, replay, integration against sim/Postgres/Redis)
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP) ## Run only fast unit and replay tests
	$(PY) -m pytest -m "not integration and not slow" $(PYTEST_ARGS)

bench: $(STAMP) ## Micro benchmarks (pytest-benchmark) and the quick IPC harness; `bash benches/run_all.sh` runs everything
	$(PY) -m pytest benches -o python_files='bench_*.py' -p no:cacheprovider --benchmark-only -q
	$(PY) -m benches.ipc --quick

lint: $(STAMP) ## ruff lint + format check, mypy on the typed edges
	$(PY) -m ruff check .
	$(PY) -m mypy

fmt: $(STAMP) ## Format the code with ruff
	$(PY) -m ruff format .

clean: ## Remove caches and stale shared-memory segments of this project
	rm -rf .pytest_cache .ruff_cache .mypy_cache .benchmarks
	-$(PY) -m ringbuf.ringstat --clean
