# Shared settings of the loopback PostgreSQL tier (sourced by up.sh, down.sh, kill-primary.sh,
# rejoin.sh, stop-replica.sh, restore-drill.sh). Ports: docs/availability.md.
# shellcheck shell=bash

PG_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$PG_DIR/../../.." && pwd)
CLUSTER_DIR=${STOREFRONT_CLUSTER_DIR:-$REPO/.cluster}
STATE=$CLUSTER_DIR/postgres
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
VENV=$STATE/venv
RUN=$STATE/run        # unix sockets and pid files
STANZA=storefront
BACKREST_CONF=$STATE/backrest/pgbackrest.conf

NODES=(pg1 pg2)
# the nodes' PostgreSQL ports can be moved (CLUSTER_PG1_PORT, CLUSTER_PG2_PORT) when
# something else holds them; HAProxy's ports stay. up.sh keeps the choice in ports.env, so a
# later run without the variables (make cluster-up) does not move a node back.
_pg1_env=${CLUSTER_PG1_PORT:-} _pg2_env=${CLUSTER_PG2_PORT:-}
if [ -f "$STATE/ports.env" ]; then
  # shellcheck disable=SC1091
  . "$STATE/ports.env"
fi
CLUSTER_PG1_PORT=${_pg1_env:-${CLUSTER_PG1_PORT:-5441}}
CLUSTER_PG2_PORT=${_pg2_env:-${CLUSTER_PG2_PORT:-5442}}
declare -A PG_PORT=([pg1]=$CLUSTER_PG1_PORT [pg2]=$CLUSTER_PG2_PORT)
declare -A REST_PORT=([pg1]=8441 [pg2]=8442)
declare -A RAFT_PORT=([pg1]=5461 [pg2]=5462)
WITNESS_RAFT_PORT=5463
WRITE_PORT=5450   # HAProxy: the current primary
READ_PORT=5451    # HAProxy: the replica (the primary when no replica is up)
HAPROXY_STATS_PORT=8450
# prometheus-postgres-exporter beside each node (pg_stat_archiver, replication), scraped with
# Patroni's own /metrics (REST_PORT) by deploy/monitoring/prometheus/cluster.yml and the drills
declare -A EXPORTER_PORT=([pg1]=9187 [pg2]=9188)

log() { printf '[postgres %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
die() { log "ERROR: $*" >&2; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# as the postgres user (Patroni, PostgreSQL and pgBackRest never run as root)
as_pg() { runuser -u postgres -- "$@"; }

# the secrets up.sh generated (superuser, replication, storefront passwords)
load_secrets() {
  [ -f "$STATE/secrets.env" ] || die "no $STATE/secrets.env: run deploy/cluster/postgres/up.sh"
  # shellcheck disable=SC1091
  . "$STATE/secrets.env"
}

# psql as the superuser to 127.0.0.1:PORT (database $2, default postgres); extra args follow
psql_at() {
  local port=$1 db=${2:-postgres}
  shift 2 || shift $#
  PGPASSWORD=$PG_SUPERUSER_PASSWORD PGCONNECT_TIMEOUT=2 "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 \
    -h 127.0.0.1 -p "$port" -U postgres -d "$db" "$@"
}

# the REST role of a node: "primary", "replica" or "" (down)
node_role() {
  local node=$1
  if curl -fsS -m 2 -o /dev/null "http://127.0.0.1:${REST_PORT[$node]}/primary" 2>/dev/null; then
    echo primary
  elif curl -fsS -m 2 -o /dev/null "http://127.0.0.1:${REST_PORT[$node]}/replica" 2>/dev/null; then
    echo replica
  fi
}

current_primary() {
  local node
  for node in "${NODES[@]}"; do
    [ "$(node_role "$node")" = primary ] && { echo "$node"; return 0; }
  done
  return 1
}

pid_alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

# the pid in a pid file, if that process is alive
live_pid() {
  local pid
  [ -f "$1" ] || return 1
  pid=$(head -n1 "$1")
  pid_alive "$pid" && echo "$pid"
}

# --- processes ---
# Each runs in its own session (setsid) as postgres; the pid file holds the session leader, so
# kill-primary.sh can SIGKILL the whole process group. Patroni puts the postmaster in a
# session of its own (postmaster.pid names it).
start_detached() { # name pidfile logfile command...
  local name=$1 pidfile=$2 logfile=$3
  shift 3
  if live_pid "$pidfile" >/dev/null; then
    return 0
  fi
  rm -f "$pidfile"
  log "starting $name"
  as_pg setsid -f /bin/sh -c 'echo $$ > "$0"; out=$1; shift; exec "$@" >>"$out" 2>&1' "$pidfile" "$logfile" "$@" \
    </dev/null
  for _ in $(seq 1 50); do [ -s "$pidfile" ] && return 0; sleep 0.1; done
  die "$name did not start (see $logfile)"
}
start_patroni() { # node
  local node=$1 port
  if ! live_pid "$RUN/patroni-$node.pid" >/dev/null; then
    local ports=("${REST_PORT[$node]}" "${RAFT_PORT[$node]}")
    # the PostgreSQL port may be held by this node's own postmaster, left running
    live_pid "$STATE/$node/data/postmaster.pid" >/dev/null || ports+=("${PG_PORT[$node]}")
    for port in "${ports[@]}"; do
      port_open "$port" && die "port $port (node $node) is taken by another process:" \
        "$(ss -ltnpH "sport = :$port" 2>/dev/null | sed 's/.*users://')"
    done
  fi
  start_detached "patroni $node (PostgreSQL :${PG_PORT[$node]}, REST :${REST_PORT[$node]})" \
    "$RUN/patroni-$node.pid" "$STATE/$node/log/patroni.out" \
    "$VENV/bin/patroni" "$STATE/$node/patroni.yml"
}
