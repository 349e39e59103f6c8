#!/usr/bin/env bash
# The RabbitMQ drill's fault: SIGKILL the node holding the leader of quorum queue $1 (default:
# the cluster deployment's job queue), then measure the time until a surviving node reports a
# new leader. Prints both; exits 1 without a new leader within 60 s. The node stays down
# (restart-node.sh or rejoin.sh brings it back).
set -euo pipefail
# shellcheck source=deploy/cluster/rabbitmq/lib.sh
. "$(dirname "$0")/lib.sh"
queue=${1:-$DEFAULT_QUEUE}

leader_seen_by() { # node -> the queue's leader node name, as that node says it
  ctl "$1" list_queues -p "$VHOST" name leader --formatter json 2>/dev/null | python3 -c '
import json, sys
queue = sys.argv[1]
for row in json.load(sys.stdin):
    if row.get("name") == queue:
        print(row.get("leader") or "")' "$queue"
}

asked=$(any_running)
[ -n "$asked" ] || die "no node is running"
leader=$(leader_seen_by "$asked")
[ -n "$leader" ] || die "no quorum queue $queue (or no leader) on the cluster"
victim=""
for n in "${NODES[@]}"; do [ "$(nodename "$n")" = "$leader" ] && victim=$n; done
[ -n "$victim" ] || die "the leader $leader is not one of this tier's nodes"
pid=$(pid_of "$victim") || die "no running process for $leader"
t0=$(now_ms)
kill -9 "$pid"
log "SIGKILL $leader (pid $pid), the leader of $queue"
survivor=""
for n in "${NODES[@]}"; do [ "$n" != "$victim" ] && survivor=$n && break; done
deadline=$((t0 + 60000))
while [ "$(now_ms)" -lt "$deadline" ]; do
  new=$(leader_seen_by "$survivor" || true)
  if [ -n "$new" ] && [ "$new" != "$leader" ]; then
    log "new leader of $queue: $new, $(($(now_ms) - t0)) ms after the kill"
    exit 0
  fi
  sleep 0.2
done
die "no new leader of $queue within 60 s"
