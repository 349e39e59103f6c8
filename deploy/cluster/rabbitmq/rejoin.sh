#!/usr/bin/env bash
# After a drill: start the nodes that are down (up.sh: a member rejoins the cluster by itself),
# then check that it did: every node running in the cluster and every replica of quorum queue
# $1 (default: the job queue) online again, within ${REJOIN_WAIT:-120} s. Exits 1 otherwise,
# naming what is missing: the drill's heal fails on a node that did not come back.
set -euo pipefail
# shellcheck source=deploy/cluster/rabbitmq/lib.sh
. "$(dirname "$0")/lib.sh"
queue=${1:-$DEFAULT_QUEUE}
t0=$(now_ms)
bash "$(dirname "$0")/up.sh"

# the cluster as node $1 sees it, and the queue's replicas: "running/3 online/members"
state_seen_by() {
  local status queues
  status=$(ctl "$1" cluster_status --formatter json 2>/dev/null) || return 1
  queues=$(ctl "$1" list_queues -p "$VHOST" name members online --formatter json 2>/dev/null) ||
    return 1
  python3 -c '
import json, sys
status, queues, queue = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
row = next((q for q in queues if q.get("name") == queue), {})
running = len(status.get("running_nodes", []))
print("%d %d/%d" % (running, len(row.get("online") or []), len(row.get("members") or [])))
' "$status" "$queues" "$queue"
}

deadline=$((t0 + ${REJOIN_WAIT:-120} * 1000))
last=""
while [ "$(now_ms)" -lt "$deadline" ]; do
  ok=1
  for n in "${NODES[@]}"; do
    seen=$(state_seen_by "$n" || echo "unreachable")
    last="$last$(nodename "$n"): $seen; "
    [ "$seen" = "3 3/3" ] || ok=0
  done
  if [ $ok = 1 ]; then
    log "rejoined: three nodes running, every replica of $queue online," \
      "$(($(now_ms) - t0)) ms after rejoin.sh started"
    exit 0
  fi
  last=""
  sleep 1
done
for n in "${NODES[@]}"; do
  last="$last$(nodename "$n"): $(state_seen_by "$n" || echo unreachable); "
done
die "not rejoined within ${REJOIN_WAIT:-120} s (running nodes, $queue replicas online/members): $last"
