# Shared by the Redis tier's scripts (sourced): ports, paths, helpers. Ports:
# master :6381, replica :6382, sentinels :26381-:26383, master name "storefront".
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CLUSTER_DIR=${STOREFRONT_CLUSTER_DIR:-$(cd "$here/../../.." && pwd)/.cluster}
STATE="$CLUSTER_DIR/redis"
SERVICE=storefront
SERVERS=(6381 6382)
SENTINELS=(26381 26382 26383)
# how quickly the sentinels act: a master silent this long is subjectively down (SDOWN);
# with a quorum of 2 agreeing it is objectively down (ODOWN) and the failover starts
DOWN_AFTER_MS=${REDIS_DOWN_AFTER_MS:-2000}
FAILOVER_TIMEOUT_MS=${REDIS_FAILOVER_TIMEOUT_MS:-10000}
QUORUM=2

log() { echo "[redis] $*"; }
die() { echo "[redis] error: $*" >&2; exit 1; }

command -v redis-server >/dev/null || die "redis-server is not installed (Debian: redis-server)"
command -v redis-cli >/dev/null || die "redis-cli is not installed (Debian: redis-tools)"

cli() { redis-cli -h 127.0.0.1 -p "$1" --no-auth-warning "${@:2}"; }
alive() { [ "$(cli "$1" ping 2>/dev/null)" = PONG ]; }

# the master's port according to the sentinel on $1 (empty when it does not answer)
named_master() { cli "$1" sentinel get-master-addr-by-name "$SERVICE" 2>/dev/null | sed -n 2p; }

# the master's port if every answering sentinel names the same one (and at least one
# answers), else empty
agreed_master() {
  local seen="" port m
  for port in "${SENTINELS[@]}"; do
    m=$(named_master "$port")
    [ -n "$m" ] || continue
    if [ -z "$seen" ]; then seen=$m; elif [ "$seen" != "$m" ]; then return 0; fi
  done
  echo "$seen"
}

now_ms() { date +%s%3N; }
