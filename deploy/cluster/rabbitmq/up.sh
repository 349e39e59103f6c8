#!/usr/bin/env bash
# The loopback RabbitMQ tier of the production-shaped cluster: three nodes
# (rabbit-a/b/c@localhost, AMQP :5681-:5683) clustered with join_cluster, one Erlang cookie,
# quorum queues as the default queue type of the virtual host the app uses. Idempotent: starts
# the nodes that are not running (a node that was a member rejoins by itself) and joins a fresh
# node to the cluster. The management plugin stays off (no need, and it is not cheap).
#
# State: ${STOREFRONT_CLUSTER_DIR:-<repo>/.cluster}/rabbitmq (down.sh removes it). Writes
# $STATE/storefront.env: STOREFRONT_BROKER_URL, the three nodes' AMQP URL.
set -euo pipefail
# shellcheck source=deploy/cluster/rabbitmq/lib.sh
. "$(dirname "$0")/lib.sh"
mkdir -p "$STATE/home"
if [ ! -f "$STATE/home/.erlang.cookie" ]; then
  head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$STATE/home/.erlang.cookie"
  chmod 400 "$STATE/home/.erlang.cookie"
fi

start_node() {
  local n=$1 dir="$STATE/$1"
  mkdir -p "$dir/mnesia" "$dir/log"
  cat >"$dir/rabbitmq.conf" <<CONF
listeners.tcp.default = 127.0.0.1:${AMQP_PORT[$n]}
loopback_users.guest = true
# a node that loses its peers keeps serving only while it sees a majority (the quorum
# queues decide by majority anyway)
cluster_partition_handling = pause_minority
vm_memory_high_watermark.relative = 0.2
disk_free_limit.absolute = 50MB
log.file.level = warning
log.console = false
CONF
  echo "[]." >"$dir/enabled_plugins"
  : >"$dir/rabbitmq-env.conf"
  echo "[]." >"$dir/advanced.config"
  (node_env "$n" && setsid "$SBIN/rabbitmq-server" >>"$dir/log/stdout.log" 2>&1 </dev/null &)
}

started=()
for n in "${NODES[@]}"; do
  if ! running "$n"; then
    start_node "$n"
    started+=("$n")
  fi
done
for n in "${started[@]}"; do
  # await_startup fails at once while the node's Erlang VM is not reachable yet (a node
  # restarted after a SIGKILL was seen to need longer than one ask): wait for it first
  for _ in $(seq 120); do running "$n" && break; sleep 1; done
  ctl "$n" await_startup --timeout 120 >/dev/null 2>&1 ||
    die "node $(nodename "$n") did not start (see $STATE/$n/log)"
  log "node $(nodename "$n") started (AMQP :${AMQP_PORT[$n]})"
done

# the cluster: b and c join a (a fresh node only; a member that restarted is in it already)
seed=$(nodename a)
for n in b c; do
  if ! ctl "$n" cluster_status --formatter json | grep -q "\"$seed\""; then
    {
      ctl "$n" stop_app && ctl "$n" reset && ctl "$n" join_cluster "$seed" && ctl "$n" start_app
    } >>"$STATE/$n/log/cluster.log" 2>&1 || die "$(nodename "$n") could not join (see $STATE/$n/log)"
    log "$(nodename "$n") joined $seed"
  fi
done

# the app's virtual host, quorum queues its default type (the app declares its queues quorum
# explicitly too: x-queue-type, decision 0177); RabbitMQ 3.10 sets the type at creation only
if ! ctl a list_vhosts name | grep -qx "$VHOST"; then
  ctl a add_vhost "$VHOST" --default-queue-type quorum >/dev/null
  ctl a set_permissions -p "$VHOST" guest ".*" ".*" ".*" >/dev/null
  log "virtual host $VHOST (default queue type quorum)"
fi

# a member that restarted is running before the others list it again: wait for it (60 s)
for _ in $(seq 60); do
  running_nodes=$(ctl a cluster_status --formatter json | python3 -c \
    'import json,sys; print(len(json.load(sys.stdin)["running_nodes"]))') || running_nodes=0
  [ "$running_nodes" = 3 ] && break
  sleep 1
done
[ "$running_nodes" = 3 ] || die "the cluster runs $running_nodes of 3 nodes"
log "three nodes clustered and running"

hosts=""
for n in "${NODES[@]}"; do hosts+="127.0.0.1:${AMQP_PORT[$n]},"; done
echo "STOREFRONT_BROKER_URL=amqp://guest:guest@${hosts%,}/$VHOST" >"$STATE/storefront.env"
