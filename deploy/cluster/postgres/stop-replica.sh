#!/usr/bin/env bash
# Fault injection: stop the replica (its Patroni stops its PostgreSQL, SIGTERM). Patroni
# takes it out of synchronous_standby_names (synchronous_mode is not strict), so the primary
# keeps committing alone, and HAProxy's :5451 sends reads to the primary until a standby is
# back.
#   stop-replica.sh            writes through :5450 while stopping it and prints the longest
#                              write stall (a commit waits for the synchronous standby until
#                              Patroni drops it), then the time until :5451 answers from the
#                              primary
#   stop-replica.sh --stop-only  just the stop
# rejoin.sh starts it again.
set -euo pipefail
# shellcheck source=deploy/cluster/postgres/lib.sh
. "$(dirname "$0")/lib.sh"

stop_replica() {
  local node pid
  for node in "${NODES[@]}"; do
    [ "$(node_role "$node")" = replica ] || continue
    pid=$(live_pid "$RUN/patroni-$node.pid") || die "patroni $node has no live pid file"
    kill -TERM -- "-$pid"
    for _ in $(seq 1 600); do pid_alive "$pid" || break; sleep 0.1; done
    date +%s.%N >"$RUN/replica-stopped-at"
    log "stopped the replica $node (PostgreSQL :${PG_PORT[$node]})"
    return 0
  done
  die "no node reports itself a replica"
}

if [ "${1:-}" = --stop-only ]; then
  stop_replica
  exit 0
fi

load_secrets
status=0
# the password through the environment, not the command line (ps shows that)
PGPASSWORD=$PG_SUPERUSER_PASSWORD "$VENV/bin/python" "$PG_DIR/failover_probe.py" \
  --dsn "host=127.0.0.1 port=$WRITE_PORT dbname=postgres user=postgres" \
  --fault "$0 --stop-only" --after 5 || status=$?
deadline=$((SECONDS + 60))
until [ "$(psql_at "$READ_PORT" postgres -At -c 'select pg_is_in_recovery()' 2>/dev/null)" = f ]; do
  [ $SECONDS -lt $deadline ] || die ":$READ_PORT does not answer from the primary after 60 s"
  sleep 0.2
done
log ":$READ_PORT answers from the primary (reads fall back) by" \
  "$(awk -v a="$(cat "$RUN/replica-stopped-at")" -v b="$(date +%s.%N)" \
    'BEGIN { printf "%.1f", b - a }') s after the replica stopped" \
  "(rejoin the replica: deploy/cluster/postgres/rejoin.sh)"
exit $status
