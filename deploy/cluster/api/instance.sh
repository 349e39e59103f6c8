#!/usr/bin/env bash
# One process of the API tier, for the drills and by hand:
#   instance.sh start|stop|kill|restart|status api1|api2|worker1|worker2
# stop: SIGTERM to the process (the API drains: /readyz 503 at once, HAProxy stops routing
# to it, in-flight requests finish), waiting for it to exit; kill: SIGKILL to its whole
# process group (a crash); start waits until the instance's /readyz answers 200.
set -euo pipefail
# shellcheck source=deploy/cluster/api/lib.sh
. "$(dirname "$0")/lib.sh"

start_api() {
  local n=$1
  load_env
  mkdir -p "$STATE/metrics/api$n"
  spawn "api$n" env STOREFRONT_PORT="${API_PORT[$n]}" STOREFRONT_WORKERS="$API_WORKERS" \
    PROMETHEUS_MULTIPROC_DIR="$STATE/metrics/api$n" "$BIN/storefront" serve
  wait_http "http://127.0.0.1:${API_PORT[$n]}/readyz" "${WAIT_SECONDS:-180}" \
    || die "api$n is not ready on :${API_PORT[$n]} (see $LOGS/api$n.log)"
  log "api$n ready on :${API_PORT[$n]} ($API_WORKERS workers)"
}

start_worker() {
  local n=$1
  load_env
  spawn "worker$n" env STOREFRONT_OBSERVABILITY__WORKER_METRICS_PORT="${WORKER_METRICS_PORT[$n]}" \
    "$BIN/storefront" worker
  log "worker$n started (metrics :${WORKER_METRICS_PORT[$n]})"
}

start_one() {
  case $1 in
    api[12]) start_api "${1#api}" ;;
    worker[12]) start_worker "${1#worker}" ;;
    *) die "unknown process $1 (api1, api2, worker1, worker2)" ;;
  esac
}

[ $# -eq 2 ] || die "usage: $0 start|stop|kill|restart|status api1|api2|worker1|worker2"
action=$1 name=$2
case $action in
  start)
    if live_pid "$RUN/$name.pid" >/dev/null; then log "$name already running"; else start_one "$name"; fi
    ;;
  stop) stop "$name" "${STOP_SECONDS:-60}" && log "$name stopped" ;;
  kill)
    pid=$(live_pid "$RUN/$name.pid") || die "$name is not running"
    kill -KILL -- "-$pid"
    rm -f "$RUN/$name.pid"
    log "$name killed (SIGKILL to process group $pid)"
    ;;
  restart)
    stop "$name" "${STOP_SECONDS:-60}"
    start_one "$name"
    ;;
  status)
    if pid=$(live_pid "$RUN/$name.pid"); then echo "$name running ($pid)"; else echo "$name stopped"; exit 1; fi
    ;;
  *) die "unknown action $action" ;;
esac
