#!/usr/bin/env bash
# make cluster-up: the loopback production-shaped stack (docs/availability.md), in order:
# PostgreSQL (Patroni pair behind HAProxy), Redis (Sentinel), RabbitMQ (three nodes), then
# the API tier (two API instances, two job workers, the payment emulator, HAProxy :8100).
# A component whose deploy/cluster/<c>/up.sh is absent, or left out of CLUSTER_COMPONENTS
# (default "postgres redis rabbitmq"), is replaced by this machine's own service
# (deploy/cluster/api/up.sh says how). State: ${STOREFRONT_CLUSTER_DIR:-<repo>/.cluster}.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
STOREFRONT_CLUSTER_DIR=${STOREFRONT_CLUSTER_DIR:-$(cd "$here/../.." && pwd)/.cluster}
export STOREFRONT_CLUSTER_DIR
mkdir -p "$STOREFRONT_CLUSTER_DIR"
started=$(date +%s)
for component in ${CLUSTER_COMPONENTS-postgres redis rabbitmq}; do
  if [ -f "$here/$component/up.sh" ]; then
    bash "$here/$component/up.sh"
  else
    echo "[cluster] no deploy/cluster/$component/up.sh: the API tier uses this machine's own"
  fi
done
bash "$here/api/up.sh"
echo "[cluster] up in $(($(date +%s) - started)) s: http://127.0.0.1:8100"
