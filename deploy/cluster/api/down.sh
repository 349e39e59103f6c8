#!/usr/bin/env bash
# Stop the API tier (the reverse of up.sh); its state (secrets, logs) stays in
# $STOREFRONT_CLUSTER_DIR/api. The APIs drain first (SIGTERM), as in a deploy.
set -euo pipefail
# shellcheck source=deploy/cluster/api/lib.sh
. "$(dirname "$0")/lib.sh"

for name in api1 api2 worker1 worker2; do
  stop "$name" 60 &
done
wait
"$API_DIR/haproxy.sh" stop
stop payments 10
log "down"
