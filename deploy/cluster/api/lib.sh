# Shared settings of the loopback API tier (sourced by up.sh, down.sh, instance.sh).
# Ports: docs/availability.md (API :8101 :8102, HAProxy :8100, its stats :8150).
# shellcheck shell=bash

API_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$API_DIR/../../.." && pwd)
CLUSTER_DIR=${STOREFRONT_CLUSTER_DIR:-$REPO/.cluster}
STATE=$CLUSTER_DIR/api
RUN=$STATE/run      # pid files
LOGS=$STATE/logs
BIN=$REPO/.venv/bin

declare -A API_PORT=([1]=8101 [2]=8102)
declare -A WORKER_METRICS_PORT=([1]=9111 [2]=9112)
LB_PORT=8100
LB_STATS_PORT=8150
EMULATOR_PORT=8420
# the instances' worker processes: one per core (docs/deploy.md, "workers = cores")
API_WORKERS=${API_WORKERS:-$(nproc)}

log() { printf '[api %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
die() { log "ERROR: $*" >&2; exit 1; }

pid_alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

# the pid in a pid file, if that process is alive
live_pid() {
  local pid
  [ -f "$1" ] || return 1
  pid=$(head -n1 "$1")
  pid_alive "$pid" && echo "$pid"
}

# start "$@" in a session of its own (its pid is its process group: a SIGKILL of the group
# takes its children with it), output to $LOGS/$1.log, pid to $RUN/$1.pid
spawn() {
  local name=$1
  shift
  mkdir -p "$RUN" "$LOGS"
  # shellcheck disable=SC2016
  setsid env -u STOREFRONT_CLUSTER_DIR sh -c 'echo $$ > "$0"; exec "$@"' "$RUN/$name.pid" "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
  local i
  for i in $(seq 50); do
    [ -s "$RUN/$name.pid" ] && return 0
    sleep 0.1
  done
  die "$name did not start (see $LOGS/$name.log)"
}

# the CLI, without the scripts' own STOREFRONT_CLUSTER_DIR (not a setting: the app warns)
sf() { env -u STOREFRONT_CLUSTER_DIR "$BIN/storefront" "$@"; }

# stop a spawned process: SIGTERM to it alone (uvicorn's supervisor forwards it to its
# workers; a signal to the whole group would reach each worker twice and cut its drain
# short), then wait up to $2 seconds, then SIGKILL the group
stop() {
  local name=$1 wait_s=${2:-40} pid i
  pid=$(live_pid "$RUN/$name.pid") || { rm -f "$RUN/$name.pid"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq $((wait_s * 10))); do
    pid_alive "$pid" || break
    sleep 0.1
  done
  if pid_alive "$pid"; then
    log "$name did not stop in ${wait_s}s: SIGKILL"
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  # stray children of a killed supervisor (its workers) go with the group
  kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$RUN/$name.pid"
}

# wait until URL answers 200, up to $2 seconds
wait_http() {
  local url=$1 wait_s=${2:-120} i
  for i in $(seq "$wait_s"); do
    curl -fsS -m 2 -o /dev/null "$url" 2>/dev/null && return 0
    sleep 1
  done
  return 1
}

# the environment every Storefront process of the tier gets
load_env() {
  [ -f "$STATE/storefront.env" ] || die "no $STATE/storefront.env: run deploy/cluster/api/up.sh"
  set -a
  # shellcheck disable=SC1091
  . "$STATE/storefront.env"
  set +a
}
