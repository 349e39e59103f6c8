#!/usr/bin/env bash
# Brings back a node that was killed (kill-primary.sh) or stopped: starts its Patroni, which
# rewinds the old primary's data directory onto the new timeline (pg_rewind) when needed and
# follows the current primary. Waits until it streams as the synchronous standby again.
#   rejoin.sh [NODE]   (default: every node whose Patroni is not running)
set -euo pipefail
# shellcheck source=deploy/cluster/postgres/lib.sh
. "$(dirname "$0")/lib.sh"
load_secrets

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for node in "${NODES[@]}"; do
    live_pid "$RUN/patroni-$node.pid" >/dev/null || targets+=("$node")
  done
fi
[ ${#targets[@]} -gt 0 ] || { log "every node's Patroni is running"; exit 0; }

start=$(date +%s.%N)
for node in "${targets[@]}"; do
  # a killed node's postmaster.pid is stale: Patroni starts PostgreSQL over it (crash recovery)
  start_patroni "$node"
done
# back when it runs (as a replica, or as the primary again if it came back before its leader
# key lapsed and kept it) and the primary has a streaming synchronous standby
for node in "${targets[@]}"; do
  deadline=$((SECONDS + 300))
  until role=$(node_role "$node") && [ -n "$role" ] && [ "$(psql_at "$WRITE_PORT" postgres -At -c \
    "select count(*) from pg_stat_replication where state = 'streaming' and sync_state = 'sync'" \
    2>/dev/null)" = 1 ]; do
    [ $SECONDS -lt $deadline ] || die "$node: no streaming synchronous standby after 300 s (see $STATE/$node/log)"
    sleep 1
  done
  log "$node is back as the $role, the cluster has a streaming synchronous standby again, after" \
    "$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"
done
