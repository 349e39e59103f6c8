#!/usr/bin/env bash
# The Redis drill's fault: SIGKILL the current master (as the sentinels name it), then measure
# the time until every sentinel names a new master that answers as one. Prints both; exits 1
# if no new master within 60 s. The killed server stays down (rejoin.sh brings it back as a
# replica).
set -euo pipefail
# shellcheck source=deploy/cluster/redis/lib.sh
. "$(dirname "$0")/lib.sh"
old=$(agreed_master)
[ -n "$old" ] || die "the sentinels do not agree on a master"
pidfile="$STATE/server-$old/redis.pid"
[ -f "$pidfile" ] || die "no pid file for :$old"
pid=$(cat "$pidfile")
t0=$(now_ms)
kill -9 "$pid"
log "SIGKILL master :$old (pid $pid)"
deadline=$((t0 + 60000))
while [ "$(now_ms)" -lt "$deadline" ]; do
  new=$(agreed_master)
  if [ -n "$new" ] && [ "$new" != "$old" ] && [ "$(cli "$new" role 2>/dev/null | head -1)" = master ]; then
    log "new master :$new, named by every sentinel $(($(now_ms) - t0)) ms after the kill"
    exit 0
  fi
  sleep 0.05
done
die "no new master within 60 s"
