# Shared by the RabbitMQ tier's scripts (sourced). Ports: rabbit-a@localhost,
# rabbit-b@localhost, rabbit-c@localhost on AMQP :5681-:5683, distribution :25681-:25683.
# This machine's own RabbitMQ (:5672, node "rabbit") is never touched; the nodes share its
# epmd (:4369), which tells nodes apart by name.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CLUSTER_DIR=${STOREFRONT_CLUSTER_DIR:-$(cd "$here/../../.." && pwd)/.cluster}
STATE="$CLUSTER_DIR/rabbitmq"
NODES=(a b c)
declare -A AMQP_PORT=([a]=5681 [b]=5682 [c]=5683)
declare -A DIST_PORT=([a]=25681 [b]=25682 [c]=25683)
VHOST=storefront
# the job queue of the cluster's deployment (STOREFRONT_DEPLOYMENT_NAME=storefront-cluster)
DEFAULT_QUEUE=storefront-cluster.jobs

log() { echo "[rabbitmq] $*"; }
die() { echo "[rabbitmq] error: $*" >&2; exit 1; }

SBIN=$(ls -d /usr/lib/rabbitmq/lib/rabbitmq_server-*/sbin 2>/dev/null | sort -V | tail -1)
[ -n "$SBIN" ] || die "RabbitMQ is not installed (Debian: rabbitmq-server)"

nodename() { echo "rabbit-$1@localhost"; }

# one node's environment: its own name, ports, data, logs, config; the tier's own Erlang
# cookie in $STATE/home (HOME), shared by the three nodes and the CLI tools
node_env() {
  local n=$1 dir="$STATE/$1"
  export HOME="$STATE/home"
  export RABBITMQ_NODENAME
  RABBITMQ_NODENAME=$(nodename "$n")
  export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
  export RABBITMQ_NODE_PORT=${AMQP_PORT[$n]}
  export RABBITMQ_DIST_PORT=${DIST_PORT[$n]}
  export RABBITMQ_MNESIA_BASE="$dir/mnesia"
  export RABBITMQ_LOG_BASE="$dir/log"
  export RABBITMQ_PID_FILE="$dir/rabbit.pid"
  export RABBITMQ_CONFIG_FILE="$dir/rabbitmq" # .conf
  export RABBITMQ_ADVANCED_CONFIG_FILE="$dir/advanced.config"
  export RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins"
  export RABBITMQ_CONF_ENV_FILE="$dir/rabbitmq-env.conf"
}

ctl() { # node rabbitmqctl-args...
  local n=$1
  shift
  (node_env "$n" && "$SBIN/rabbitmqctl" -n "$(nodename "$n")" -q "$@")
}

running() { ctl "$1" ping >/dev/null 2>&1; }

pid_of() { # node -> the Erlang VM's pid (empty when it does not run)
  local f="$STATE/$1/rabbit.pid"
  [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null && cat "$f"
}

# a node that runs, to ask (empty when none)
any_running() {
  local n
  for n in "${NODES[@]}"; do running "$n" && { echo "$n"; return 0; }; done
  return 0
}

now_ms() { date +%s%3N; }
