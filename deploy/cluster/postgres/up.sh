#!/usr/bin/env bash
# The loopback PostgreSQL tier of the production-shaped cluster: a Patroni-managed
# PostgreSQL 15 pair with synchronous replication, Patroni's Raft DCS with a witness (so that
# losing one data node leaves a quorum of two), HAProxy in front (127.0.0.1:5450 the primary,
# :5451 the replica), WAL archiving and a full backup with pgBackRest, a
# prometheus-postgres-exporter per node (:9187 pg1, :9188 pg2), and the storefront database
# migrated. Idempotent: starts what is not running, keeps the state it finds.
#
# State: ${STOREFRONT_CLUSTER_DIR:-<repo>/.cluster}/postgres (down.sh removes it).
# Writes $STATE/storefront.env: STOREFRONT_DATABASE_URL (via :5450) and
# STOREFRONT_DATABASE_REPLICA_URL (via :5451) for the API tier.
set -euo pipefail
# shellcheck source=deploy/cluster/postgres/lib.sh
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || die "run as root (it starts Patroni and PostgreSQL as the postgres user)"
[ -x "$PGBIN/postgres" ] || die "no PostgreSQL 15 binaries in $PGBIN (Debian: postgresql-15)"
id postgres >/dev/null 2>&1 || die "no postgres user (Debian's postgresql-15 creates it)"

# --- tools from Debian's packages ----------------------------------------------------------
missing=()
command -v haproxy >/dev/null || missing+=(haproxy)
command -v pgbackrest >/dev/null || missing+=(pgbackrest)
command -v curl >/dev/null || missing+=(curl)
command -v prometheus-postgres-exporter >/dev/null || missing+=(prometheus-postgres-exporter)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]} (apt)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

mkdir -p "$STATE"
chown postgres:postgres "$STATE"
chmod 755 "$STATE"
for d in "$RUN" "$STATE/backrest" "$STATE/backrest/repo" "$STATE/backrest/log" \
  "$STATE/backrest/spool" "$STATE/witness"; do
  mkdir -p "$d"
done
for node in "${NODES[@]}"; do mkdir -p "$STATE/$node/raft" "$STATE/$node/log"; done
chown -R postgres:postgres "$RUN" "$STATE/backrest" "$STATE/witness" "${NODES[@]/#/$STATE/}"
chmod 700 "$RUN"

# --- Patroni's venv (PyPI, hash-pinned), executable by the postgres user -------------------
req=$PG_DIR/requirements.txt
req_sum=$(sha256sum "$req" | cut -d' ' -f1)
if [ "$(cat "$VENV/.installed" 2>/dev/null)" != "$req_sum" ]; then
  log "building Patroni's venv ($VENV)"
  rm -rf "$VENV"
  /usr/bin/python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps --require-hashes -r "$req" \
    2>&1 | { grep -v -e '^WARNING: Location' -e DEPRECATION || true; }
  echo "$req_sum" >"$VENV/.installed"
fi
chmod -R a+rX "$VENV"

# --- secrets (generated once; root-only, the Patroni configs are postgres-only) -------------
if [ ! -f "$STATE/secrets.env" ]; then
  gen() { /usr/bin/python3 -c 'import secrets; print(secrets.token_urlsafe(24))'; }
  umask 077
  cat >"$STATE/secrets.env" <<EOF
PG_SUPERUSER_PASSWORD=$(gen)
PG_REPLICATION_PASSWORD=$(gen)
PG_APP_PASSWORD=$(gen)
EOF
  umask 022
fi
load_secrets

# --- configuration ---------------------------------------------------------------------------
cat >"$BACKREST_CONF" <<EOF
[global]
repo1-path=$STATE/backrest/repo
repo1-retention-full=2
log-path=$STATE/backrest/log
lock-path=$RUN
spool-path=$STATE/backrest/spool
log-level-console=warn
log-level-file=info
start-fast=y
compress-type=lz4
process-max=2

[$STANZA]
pg1-path=$STATE/pg1/data
pg1-port=${PG_PORT[pg1]}
pg1-socket-path=$RUN
pg2-path=$STATE/pg2/data
pg2-port=${PG_PORT[pg2]}
pg2-socket-path=$RUN
EOF
chown postgres:postgres "$BACKREST_CONF"

write_patroni_config() {
  local node=$1 partners="" other
  for other in "${NODES[@]}"; do
    [ "$other" = "$node" ] || partners+="127.0.0.1:${RAFT_PORT[$other]}, "
  done
  partners+="127.0.0.1:$WITNESS_RAFT_PORT"
  local cfg=$STATE/$node/patroni.yml
  (
    umask 077
    cat >"$cfg" <<EOF
scope: storefront
namespace: /storefront/
name: $node
log:
  level: INFO
  dir: $STATE/$node/log
restapi:
  listen: 127.0.0.1:${REST_PORT[$node]}
  connect_address: 127.0.0.1:${REST_PORT[$node]}
raft:
  data_dir: $STATE/$node/raft
  self_addr: 127.0.0.1:${RAFT_PORT[$node]}
  partner_addrs: [$partners]
bootstrap:
  # the cluster-wide (DCS) settings, written once at bootstrap; change them later with
  # patronictl edit-config. Failover: the leader key lapses ttl seconds after the primary's
  # Patroni last renewed it; loop_wait + 2 * retry_timeout must stay below ttl.
  dcs:
    ttl: 20
    loop_wait: 5
    retry_timeout: 5
    maximum_lag_on_failover: 1048576
    # a commit returns once the synchronous standby has it: failover to it loses no
    # acknowledged write. Not strict: with the standby gone the primary goes on alone.
    synchronous_mode: true
    synchronous_mode_strict: false
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        wal_level: replica
        hot_standby: "on"
        max_connections: 300
        max_wal_senders: 10
        max_replication_slots: 10
        wal_keep_size: 256MB
        wal_log_hints: "on"
        # pgBackRest archives from the primary only (it refuses archive_mode=always)
        archive_mode: "on"
        archive_timeout: 60
        password_encryption: scram-sha-256
  initdb:
    - encoding: UTF8
    - locale: C.UTF-8
    - data-checksums
postgresql:
  listen: 127.0.0.1:${PG_PORT[$node]}
  connect_address: 127.0.0.1:${PG_PORT[$node]}
  data_dir: $STATE/$node/data
  bin_dir: $PGBIN
  pgpass: $STATE/$node/pgpass
  use_unix_socket: true
  authentication:
    superuser:
      username: postgres
      password: '$PG_SUPERUSER_PASSWORD'
    replication:
      username: replicator
      password: '$PG_REPLICATION_PASSWORD'
  parameters:
    unix_socket_directories: $RUN
    archive_command: pgbackrest --config=$BACKREST_CONF --stanza=$STANZA --pg1-path=$STATE/$node/data archive-push %p
    logging_collector: "on"
    log_directory: $STATE/$node/log
    log_filename: postgresql-%a.log
    log_min_duration_statement: 1000
  pg_hba:
    - local all postgres peer
    - local all all scram-sha-256
    - host replication replicator 127.0.0.1/32 scram-sha-256
    - host all all 127.0.0.1/32 scram-sha-256
tags:
  nofailover: false
  noloadbalance: false
EOF
  )
  chown postgres:postgres "$cfg"
}
for node in "${NODES[@]}"; do write_patroni_config "$node"; done
printf 'CLUSTER_PG1_PORT=%s\nCLUSTER_PG2_PORT=%s\n' "${PG_PORT[pg1]}" "${PG_PORT[pg2]}" >"$STATE/ports.env"

others=""
for node in "${NODES[@]}"; do others+="127.0.0.1:${RAFT_PORT[$node]}, "; done
cat >"$STATE/witness/raft.yml" <<EOF
# the Raft witness: a third vote, no PostgreSQL
raft:
  data_dir: $STATE/witness/raft
  self_addr: 127.0.0.1:$WITNESS_RAFT_PORT
  partner_addrs: [${others%, }]
EOF
mkdir -p "$STATE/witness/raft"
chown -R postgres:postgres "$STATE/witness"

# --- processes -------------------------------------------------------------------------------
start_detached "Raft witness :$WITNESS_RAFT_PORT" "$RUN/witness.pid" "$STATE/witness/witness.out" \
  "$VENV/bin/patroni_raft_controller" "$STATE/witness/raft.yml"
for node in "${NODES[@]}"; do start_patroni "$node"; done

# one exporter per node, as the postgres user over the node's unix socket (peer
# authentication): it answers with pg_up 0 while its node is down, so it can start first
for node in "${NODES[@]}"; do
  if ! live_pid "$RUN/exporter-$node.pid" >/dev/null && port_open "${EXPORTER_PORT[$node]}"; then
    die "port ${EXPORTER_PORT[$node]} (the exporter of $node) is taken by another process:" \
      "$(ss -ltnpH "sport = :${EXPORTER_PORT[$node]}" 2>/dev/null | sed 's/.*users://')"
  fi
  start_detached "postgres exporter of $node (:${EXPORTER_PORT[$node]})" \
    "$RUN/exporter-$node.pid" "$STATE/$node/log/exporter.out" \
    env "DATA_SOURCE_NAME=host=$RUN port=${PG_PORT[$node]} user=postgres dbname=postgres sslmode=disable" \
    prometheus-postgres-exporter "--web.listen-address=127.0.0.1:${EXPORTER_PORT[$node]}" \
    --log.level=warn
done

if ! live_pid "$RUN/haproxy.pid" >/dev/null; then
  log "starting HAProxy (:$WRITE_PORT primary, :$READ_PORT replica, stats :$HAPROXY_STATS_PORT)"
  sed -e "s/127\.0\.0\.1:5441 /127.0.0.1:${PG_PORT[pg1]} /" \
    -e "s/127\.0\.0\.1:5442 /127.0.0.1:${PG_PORT[pg2]} /" "$PG_DIR/haproxy.cfg" >"$STATE/haproxy.cfg"
  haproxy -q -D -p "$RUN/haproxy.pid" -f "$STATE/haproxy.cfg"
fi

# --- wait: a primary through :5450, the standby streaming and synchronous --------------------
log "waiting for a primary on :$WRITE_PORT"
deadline=$((SECONDS + 180))
until [ "$(psql_at "$WRITE_PORT" postgres -At -c 'select pg_is_in_recovery()' 2>/dev/null)" = f ]; do
  [ $SECONDS -lt $deadline ] || die "no primary on :$WRITE_PORT after 180 s (logs: $STATE/pg*/log)"
  sleep 1
done
log "waiting for the standby: streaming and synchronous"
deadline=$((SECONDS + 300))
until [ "$(psql_at "$WRITE_PORT" postgres -At -c \
  "select count(*) from pg_stat_replication where state = 'streaming' and sync_state = 'sync'" \
  2>/dev/null)" = 1 ]; do
  [ $SECONDS -lt $deadline ] || die "no synchronous streaming standby after 300 s"
  sleep 1
done
until [ "$(psql_at "$READ_PORT" postgres -At -c 'select pg_is_in_recovery()' 2>/dev/null)" = t ]; do
  [ $SECONDS -lt $deadline ] || die "the standby does not answer on :$READ_PORT"
  sleep 1
done

# --- pgBackRest: the stanza, and a full backup when the repository has none -------------------
primary=$(current_primary) || die "no node reports itself primary"
if ! as_pg pgbackrest --config="$BACKREST_CONF" --stanza="$STANZA" check >/dev/null 2>&1; then
  log "pgBackRest: creating the stanza '$STANZA'"
  as_pg pgbackrest --config="$BACKREST_CONF" --stanza="$STANZA" stanza-create
  as_pg pgbackrest --config="$BACKREST_CONF" --stanza="$STANZA" check
fi
if ! as_pg pgbackrest --config="$BACKREST_CONF" --stanza="$STANZA" info --output=json |
  grep -q '"type":"full"'; then
  log "pgBackRest: first full backup"
  as_pg pgbackrest --config="$BACKREST_CONF" --stanza="$STANZA" --type=full backup
fi

# --- the storefront role and database, migrated through :5450 --------------------------------
psql_at "$WRITE_PORT" postgres <<SQL
select format('create role storefront login password %L', '$PG_APP_PASSWORD')
where not exists (select 1 from pg_roles where rolname = 'storefront') \\gexec
alter role storefront password '$PG_APP_PASSWORD';
set client_min_messages = warning;
grant pg_monitor to storefront;
select 'create database storefront owner storefront'
where not exists (select 1 from pg_database where datname = 'storefront') \\gexec
SQL
umask 077
cat >"$STATE/storefront.env" <<EOF
STOREFRONT_DATABASE_URL=postgresql://storefront:$PG_APP_PASSWORD@127.0.0.1:$WRITE_PORT/storefront
STOREFRONT_DATABASE_REPLICA_URL=postgresql://storefront:$PG_APP_PASSWORD@127.0.0.1:$READ_PORT/storefront
EOF
umask 022
if [ ! -x "$REPO/.venv/bin/storefront" ]; then
  log "installing the project (make install)"
  make -C "$REPO" install >/dev/null
fi
log "migrating the storefront database through :$WRITE_PORT"
STOREFRONT_DATABASE_URL="postgresql://storefront:$PG_APP_PASSWORD@127.0.0.1:$WRITE_PORT/storefront" \
  "$REPO/.venv/bin/storefront" migrate | tail -n 1

log "up: primary $primary; write :$WRITE_PORT, read :$READ_PORT, HAProxy stats" \
  "http://127.0.0.1:$HAPROXY_STATS_PORT/; exporters :${EXPORTER_PORT[pg1]} :${EXPORTER_PORT[pg2]};" \
  "settings in $STATE/storefront.env"
