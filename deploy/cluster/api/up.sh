#!/usr/bin/env bash
# The API tier of the loopback cluster (docs/availability.md): two Storefront API instances
# (:8101, :8102, each with workers = cores), two job workers, the payment emulator (:8420)
# and HAProxy on :8100 routing to the instances that answer /readyz (stats on :8150).
#
# Where PostgreSQL, Redis and the broker are: each component's up.sh (deploy/cluster/<c>/)
# leaves $STOREFRONT_CLUSTER_DIR/<c>/storefront.env with the STOREFRONT_* addresses that
# reach it through its failover-aware front (HAProxy's write and read ports, Sentinel, the
# multi-node AMQP URL); only the components named in CLUSTER_COMPONENTS (default all three)
# are used. Whatever is missing falls back to this machine's own services: the
# database storefront_cluster (created here) on PostgreSQL :5432, Redis :6379, RabbitMQ
# :5672, under the deployment name storefront-cluster (its own queue and key prefix).
# Safe to run twice: what runs is kept.
set -euo pipefail
# shellcheck source=deploy/cluster/api/lib.sh
. "$(dirname "$0")/lib.sh"

umask 077
mkdir -p "$STATE" "$RUN" "$LOGS"
command -v haproxy >/dev/null || {
  [ "$(id -u)" = 0 ] || die "haproxy is missing (Debian package haproxy)"
  log "installing haproxy (Debian package)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null
}

# the secrets, generated once: they seal the data at rest, so a restart keeps them
if [ ! -s "$STATE/secrets.env" ]; then
  sf secrets generate >"$STATE/secrets.env.tmp"
  mv "$STATE/secrets.env.tmp" "$STATE/secrets.env"
  log "generated the secrets ($STATE/secrets.env)"
fi

{
  echo "# written by deploy/cluster/api/up.sh at $(date -u +%FT%TZ); the components' own"
  echo "# addresses (deploy/cluster/<c>/storefront.env) override the fallbacks below"
  grep '^STOREFRONT_' "$STATE/secrets.env"
  # development, not production, only because production refuses the payment emulator
  # (plain http, test keys), as in deploy/compose; the secrets are generated ones
  cat <<ENV
STOREFRONT_ENVIRONMENT=development
STOREFRONT_DEPLOYMENT_NAME=storefront-cluster
STOREFRONT_HOST=127.0.0.1
STOREFRONT_PUBLIC_BASE_URL=http://127.0.0.1:$LB_PORT
STOREFRONT_TRUSTED_PROXIES=127.0.0.1/32
STOREFRONT_OBSERVABILITY__LOG_FORMAT=json
STOREFRONT_OBSERVABILITY__SHUTDOWN_DRAIN_SECONDS=${DRAIN_SECONDS:-8}
STOREFRONT_OBSERVABILITY__READINESS_TIMEOUT_SECONDS=3
STOREFRONT_GRACEFUL_SHUTDOWN_SECONDS=20
STOREFRONT_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/storefront_cluster
STOREFRONT_REDIS_URL=redis://127.0.0.1:6379/0
STOREFRONT_BROKER_URL=amqp://guest:guest@127.0.0.1:5672/
STOREFRONT_PAYMENTS__API_BASE=http://127.0.0.1:$EMULATOR_PORT
STOREFRONT_PAYMENTS__SECRET_KEY=sk_test_localstripe
STOREFRONT_PAYMENTS__WEBHOOK_SECRET=whsec_localstripe
ENV
  for component in ${CLUSTER_COMPONENTS-postgres redis rabbitmq}; do
    if [ -f "$CLUSTER_DIR/$component/storefront.env" ]; then
      echo "# from $component"
      grep '^STOREFRONT_' "$CLUSTER_DIR/$component/storefront.env"
    fi
  done
} >"$STATE/storefront.env"
load_env

# the fallback database: created on this machine's PostgreSQL when that is where the URL points
if [ "$STOREFRONT_DATABASE_URL" = "postgresql://postgres@127.0.0.1:5432/storefront_cluster" ]; then
  exists=$(psql -X -h 127.0.0.1 -p 5432 -U postgres -d postgres -tAc \
    "select 1 from pg_database where datname = 'storefront_cluster'")
  if [ "$exists" != 1 ]; then
    psql -X -q -h 127.0.0.1 -p 5432 -U postgres -d postgres -c "create database storefront_cluster"
    log "created the database storefront_cluster on :5432"
  fi
fi
log "database: ${STOREFRONT_DATABASE_URL%%@*}@...${STOREFRONT_DATABASE_URL##*@}"
sf migrate >>"$LOGS/migrate.log" 2>&1 || die "migrate failed (see $LOGS/migrate.log)"
log "migrated"

# the payment emulator; its events go to the webhook through the balancer
if ! live_pid "$RUN/payments.pid" >/dev/null; then
  spawn payments "$BIN/python" "$REPO/tests/support/stripe_emulator.py" --port "$EMULATOR_PORT" \
    --webhook-secret whsec_localstripe --webhook-url "http://127.0.0.1:$LB_PORT/api/v1/webhooks/stripe"
  log "payment emulator on :$EMULATOR_PORT"
fi

# the balancer first (it routes to no instance until one is ready), then the processes,
# two at a time: both APIs start together
"$API_DIR/haproxy.sh" start
"$API_DIR/instance.sh" start api1 &
first=$!
"$API_DIR/instance.sh" start api2
wait "$first"
"$API_DIR/instance.sh" start worker1
"$API_DIR/instance.sh" start worker2
wait_http "http://127.0.0.1:$LB_PORT/readyz" 60 || die "the balancer does not answer /readyz"
log "up: http://127.0.0.1:$LB_PORT (HAProxy stats http://127.0.0.1:$LB_STATS_PORT/)"
