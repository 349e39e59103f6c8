#!/usr/bin/env bash
# HAProxy of the API tier: haproxy.sh start|stop|status (status: each server's state)
set -euo pipefail
# shellcheck source=deploy/cluster/api/lib.sh
. "$(dirname "$0")/lib.sh"

case ${1:-} in
  start)
    mkdir -p "$RUN" "$LOGS"
    sed "s|@STATE@|$STATE|g" "$API_DIR/haproxy.cfg" >"$STATE/haproxy.cfg"
    haproxy -c -q -f "$STATE/haproxy.cfg" || die "invalid $STATE/haproxy.cfg"
    if pid=$(live_pid "$RUN/haproxy.pid"); then
      # a new configuration: a soft reload keeps the connections it has
      haproxy -D -f "$STATE/haproxy.cfg" -sf "$pid"
      log "HAProxy reloaded on :$LB_PORT"
    else
      haproxy -D -f "$STATE/haproxy.cfg"
      log "HAProxy on :$LB_PORT (stats :$LB_STATS_PORT)"
    fi
    ;;
  stop)
    if pid=$(live_pid "$RUN/haproxy.pid"); then kill -TERM "$pid"; log "HAProxy stopped"; fi
    rm -f "$RUN/haproxy.pid"
    ;;
  status)
    curl -fsS -m 2 "http://127.0.0.1:$LB_STATS_PORT/;csv" |
      awk -F, '$1 == "storefront" && $2 != "BACKEND" { print $2, $18 }'
    ;;
  *) die "usage: $0 start|stop|status" ;;
esac
