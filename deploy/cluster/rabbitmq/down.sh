#!/usr/bin/env bash
# Stop the three RabbitMQ nodes and remove the tier's state (KEEP_STATE=1 keeps it).
# Idempotent; never touches this machine's own RabbitMQ.
set -uo pipefail
# shellcheck source=deploy/cluster/rabbitmq/lib.sh
. "$(dirname "$0")/lib.sh"
for n in c b a; do
  if running "$n"; then
    ctl "$n" stop >/dev/null 2>&1 || true
  fi
  pid=$(pid_of "$n" || true)
  if [ -n "$pid" ]; then
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
done
if [ "${KEEP_STATE:-0}" != 1 ]; then rm -rf "$STATE"; fi
log "stopped"
