#!/usr/bin/env bash
# make cluster-down: stop the cluster in the reverse order of up.sh (the API tier first, so
# nothing writes while the data tier stops). State stays in $STOREFRONT_CLUSTER_DIR.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
STOREFRONT_CLUSTER_DIR=${STOREFRONT_CLUSTER_DIR:-$(cd "$here/../.." && pwd)/.cluster}
export STOREFRONT_CLUSTER_DIR
bash "$here/api/down.sh"
status=0
for component in $(echo ${CLUSTER_COMPONENTS-postgres redis rabbitmq} | tr " " "\n" | tac); do
  if [ -f "$here/$component/down.sh" ]; then
    bash "$here/$component/down.sh" || status=1
  fi
done
exit $status
