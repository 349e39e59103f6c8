#!/usr/bin/env bash
# Fault injection: SIGKILL the current primary's node, its Patroni's process group and its
# postmaster's (the postmaster and every backend), as a power cut or an OOM kill of the whole
# node would. Patroni's leader key then lapses (ttl, 20 s), the synchronous standby is
# promoted, HAProxy's /primary check moves :5450 to it.
#
#   kill-primary.sh            writes through :5450 before, during and after the kill and prints
#                              the time until writes are accepted again and the acknowledged
#                              writes lost (failover_probe.py); exit 1 if any was lost
#   kill-primary.sh --kill-only  just the kill (a load harness measures on its own)
#
# The killed node stays down: rejoin.sh brings it back as a replica.
set -euo pipefail
# shellcheck source=deploy/cluster/postgres/lib.sh
. "$(dirname "$0")/lib.sh"

kill_primary() {
  local node patroni postmaster
  node=$(current_primary) || die "no node reports itself primary"
  patroni=$(live_pid "$RUN/patroni-$node.pid") || die "patroni $node has no live pid file"
  postmaster=$(head -n1 "$STATE/$node/data/postmaster.pid" 2>/dev/null || true)
  kill -KILL -- "-$patroni"
  if pid_alive "$postmaster"; then
    kill -KILL -- "-$postmaster" 2>/dev/null || kill -KILL "$postmaster"
  fi
  log "killed the primary $node (PostgreSQL :${PG_PORT[$node]}): patroni process group" \
    "$patroni, postmaster process group ${postmaster:-?} (SIGKILL)"
}

if [ "${1:-}" = --kill-only ]; then
  kill_primary
  exit 0
fi

load_secrets
before=$(current_primary) || die "no node reports itself primary"
log "primary before: $before; writing through :$WRITE_PORT, then killing it"
status=0
# the password through the environment, not the command line (ps shows that)
PGPASSWORD=$PG_SUPERUSER_PASSWORD "$VENV/bin/python" "$PG_DIR/failover_probe.py" \
  --dsn "host=127.0.0.1 port=$WRITE_PORT dbname=postgres user=postgres" \
  --fault "$0 --kill-only" || status=$?
after=$(current_primary || echo none)
log "primary after: $after (rejoin the old one as a replica: deploy/cluster/postgres/rejoin.sh)"
exit $status
