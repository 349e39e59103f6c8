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

.PHONY: install run test lint fmt migrate seed clean
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

fmt: install
	$(BIN)/ruff check --fix src tests migrations
	$(BIN)/ruff format src tests migrations

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache
