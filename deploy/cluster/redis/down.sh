#!/usr/bin/env bash
# Stop the Redis tier (sentinels first, so none starts a failover while the servers stop) and
# remove its state (KEEP_STATE=1 keeps it). Idempotent.
set -uo pipefail
# shellcheck source=deploy/cluster/redis/lib.sh
. "$(dirname "$0")/lib.sh"
stop_pidfile() { # pidfile
  [ -f "$1" ] || return 0
  local pid
  pid=$(cat "$1")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$1"
}
for port in "${SENTINELS[@]}"; do stop_pidfile "$STATE/sentinel-$port/sentinel.pid"; done
for port in "${SERVERS[@]}"; do stop_pidfile "$STATE/server-$port/redis.pid"; done
if [ "${KEEP_STATE:-0}" != 1 ]; then rm -rf "$STATE"; fi
log "stopped"
