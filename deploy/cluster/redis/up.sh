#!/usr/bin/env bash
# The loopback Redis tier of the production-shaped cluster: a master (:6381), its
# replica (:6382) and three sentinels (:26381-:26383) watching them as "storefront" with a
# quorum of two. Idempotent: starts what is not running. A server that comes back while
# another is the master (after a failover) rejoins as its replica, never as a second master.
# Waits until the three sentinels agree on the master and see the replica and each other.
#
# State: ${STOREFRONT_CLUSTER_DIR:-<repo>/.cluster}/redis (down.sh removes it). Writes
# $STATE/storefront.env: STOREFRONT_REDIS_URL, the Sentinel address the app connects through.
set -euo pipefail
# shellcheck source=deploy/cluster/redis/lib.sh
. "$(dirname "$0")/lib.sh"
mkdir -p "$STATE"

# the master: as the sentinels name it, else the first server answering as a master, else
# (a fresh start) :6381
master=$(agreed_master)
if [ -z "$master" ]; then
  for port in "${SERVERS[@]}"; do
    if alive "$port" && cli "$port" role | head -1 | grep -qx master; then master=$port; break; fi
  done
fi
master=${master:-${SERVERS[0]}}

start_server() { # port [master-port]
  local port=$1 dir="$STATE/server-$1"
  mkdir -p "$dir"
  local args=(--port "$port" --bind 127.0.0.1 --daemonize yes --dir "$dir"
    --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
    --appendonly yes --appendfsync everysec --save ""
    # a replica promoted by the sentinels announces itself by the address clients reach
    --replica-announce-ip 127.0.0.1)
  if [ $# -gt 1 ]; then args+=(--replicaof 127.0.0.1 "$2"); fi
  redis-server "${args[@]}"
  for _ in $(seq 100); do alive "$port" && return 0; sleep 0.1; done
  die "redis-server :$port did not start (see $dir/redis.log)"
}

if ! alive "$master"; then
  start_server "$master"
  log "master :$master started"
fi
for port in "${SERVERS[@]}"; do
  [ "$port" = "$master" ] && continue
  if ! alive "$port"; then
    start_server "$port" "$master"
    log "replica :$port started (of :$master)"
  fi
done

for port in "${SENTINELS[@]}"; do
  alive "$port" && continue
  dir="$STATE/sentinel-$port"
  mkdir -p "$dir"
  conf="$dir/sentinel.conf"
  if [ ! -f "$conf" ]; then # the sentinel rewrites it as it learns (kept across restarts)
    cat >"$conf" <<CONF
port $port
bind 127.0.0.1
daemonize yes
dir $dir
pidfile $dir/sentinel.pid
logfile $dir/sentinel.log
sentinel announce-ip 127.0.0.1
sentinel monitor $SERVICE 127.0.0.1 $master $QUORUM
sentinel down-after-milliseconds $SERVICE $DOWN_AFTER_MS
sentinel failover-timeout $SERVICE $FAILOVER_TIMEOUT_MS
sentinel parallel-syncs $SERVICE 1
CONF
  fi
  redis-server "$conf" --sentinel
  for _ in $(seq 100); do alive "$port" && break; sleep 0.1; done
  alive "$port" || die "sentinel :$port did not start (see $dir/sentinel.log)"
  log "sentinel :$port started"
done

# settled: every sentinel names the same master, sees one replica and the two other sentinels
settled() {
  local port agreed state
  agreed=$(agreed_master)
  [ -n "$agreed" ] || return 1
  for port in "${SENTINELS[@]}"; do
    state=$(cli "$port" sentinel master "$SERVICE" 2>/dev/null) || return 1
    [ "$(echo "$state" | grep -A1 -x num-slaves | tail -1)" -ge 1 ] || return 1
    [ "$(echo "$state" | grep -A1 -x num-other-sentinels | tail -1)" -ge 2 ] || return 1
  done
  [ "$(cli "$agreed" role | head -1)" = master ] || return 1
}
for _ in $(seq 300); do settled && break; sleep 0.1; done
settled || die "the sentinels did not agree on a master within 30 s (see $STATE/sentinel-*/sentinel.log)"
log "master :$(agreed_master), replica and three sentinels agreeing"

hosts=$(printf '127.0.0.1:%s,' "${SENTINELS[@]}")
echo "STOREFRONT_REDIS_URL=redis+sentinel://${hosts%,}/$SERVICE/0" >"$STATE/storefront.env"
