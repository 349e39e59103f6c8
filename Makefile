# Storefront: `make run` serves the seeded API on the embedded default; `make test` runs the suite.
# Needs only python3 (3.11+) and make: uv (pinned) is bootstrapped into .tools/, and the
# project's locked dependencies (uv.lock) into .venv/.
PYTHON ?= python3
TOOLS := .tools
UV := $(TOOLS)/bin/uv
UV_VERSION := 0.13.9
VENV := .venv
BIN := $(VENV)/bin
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: install run test lint fmt migrate seed clean bench-export bench security
.DEFAULT_GOAL := run

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

$(VENV)/.installed: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --python $(PYTHON)
	@touch $@

install: $(VENV)/.installed

run: install
	$(BIN)/storefront migrate
	$(BIN)/storefront seed --if-empty
	$(BIN)/storefront serve

migrate: install
	$(BIN)/storefront migrate

seed: install
	$(BIN)/storefront seed

test: install
	$(BIN)/pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check src tests migrations
	$(BIN)/ruff format --check src tests migrations
	$(BIN)/mypy
	$(BIN)/lint-imports

# bandit and ruff's security (S) rules on the code, then a bounded schemathesis run against
# the app's own OpenAPI document (no 5xx, responses match their schema, errors are problem+json).
# pip-audit is not run: its vulnerability database is unreachable from these machines.
security: install
	$(BIN)/bandit -q -c pyproject.toml -r src
	$(BIN)/ruff check --select S src tests migrations
	$(BIN)/python -m tests.security.fuzz $(FUZZ_ARGS)

fmt: install
	$(BIN)/ruff check --fix src tests migrations
	$(BIN)/ruff format src tests migrations

# export memory: RSS of the server while it streams 1,000,000 orders (local PostgreSQL)
bench-export: install
	$(BIN)/python bench/export_memory.py $(BENCH_EXPORT_ARGS)

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache

# the performance benchmark (issue 5): needs PostgreSQL and Redis on loopback; writes
# bench/reports/<date>.md and a latency chart. Options: make bench BENCH_ARGS="--seconds 10"
bench: install
	$(BIN)/python -m bench.run $(BENCH_ARGS)
