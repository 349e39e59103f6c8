#!/usr/bin/env bash
# Start RabbitMQ node $1 (a, b or c; default: every node that is down) again: a member of the
# cluster rejoins it by itself, its quorum queue replicas catch up from the leaders.
set -euo pipefail
# shellcheck source=deploy/cluster/rabbitmq/lib.sh
. "$(dirname "$0")/lib.sh"
if [ $# -gt 0 ]; then
  case $1 in a | b | c) ;; *) die "usage: restart-node.sh [a|b|c]" ;; esac
  if running "$1"; then
    ctl "$1" stop >/dev/null 2>&1 || true
    pid=$(pid_of "$1" || true)
    if [ -n "$pid" ]; then
      for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    log "$(nodename "$1") stopped"
  fi
fi
exec bash "$(dirname "$0")/up.sh"
