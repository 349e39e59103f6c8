#!/usr/bin/env bash
# Stops the loopback PostgreSQL tier (HAProxy, both Patroni nodes and their PostgreSQL, the
# Raft witness, the exporters, a restore drill's instance) and removes its state: data, WAL
# archive and backups, secrets. KEEP_STATE=1 stops the processes and keeps the state.
set -euo pipefail
# shellcheck source=deploy/cluster/postgres/lib.sh
. "$(dirname "$0")/lib.sh"

# stop a process group by its pid file: SIGTERM, then SIGKILL after $2 seconds
stop_group() {
  local pidfile=$1 grace=${2:-20} pid
  pid=$(live_pid "$pidfile") || { rm -f "$pidfile"; return 0; }
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 $((grace * 10))); do
    pid_alive "$pid" || break
    sleep 0.1
  done
  pid_alive "$pid" && kill -KILL -- "-$pid" 2>/dev/null
  rm -f "$pidfile"
}

# a postmaster by its data directory (Patroni's, or the restore drill's)
stop_postmaster() {
  local data=$1 pid
  [ -f "$data/postmaster.pid" ] || return 0
  pid=$(head -n1 "$data/postmaster.pid")
  pid_alive "$pid" || return 0
  # only a postmaster of this data directory
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$data" || return 0
  kill -INT "$pid" 2>/dev/null || true # fast shutdown
  for _ in $(seq 1 300); do pid_alive "$pid" || return 0; sleep 0.1; done
  kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
}

if [ -d "$STATE" ]; then
  log "stopping HAProxy"
  stop_group "$RUN/haproxy.pid" 5
  # Patroni stops its PostgreSQL on SIGTERM (a fast shutdown)
  for node in "${NODES[@]}"; do
    log "stopping patroni $node"
    stop_group "$RUN/patroni-$node.pid" 60
    stop_postmaster "$STATE/$node/data"
  done
  log "stopping the exporters"
  for node in "${NODES[@]}"; do stop_group "$RUN/exporter-$node.pid" 5; done
  log "stopping the Raft witness"
  stop_group "$RUN/witness.pid" 10
  stop_postmaster "$STATE/restore/data"
fi

if [ "${KEEP_STATE:-0}" = 1 ]; then
  log "down (state kept in $STATE)"
else
  rm -rf "$STATE"
  log "down (state removed)"
fi
