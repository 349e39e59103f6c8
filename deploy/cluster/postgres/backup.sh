#!/usr/bin/env bash
# A pgBackRest backup of the Patroni cluster (from whichever node is primary), then the
# repository's list of backups.
#   backup.sh [full|diff|incr]   (default incr; the first one of a stanza is always full)
# Take one after every failover: the old primary's last segment may not have been archived.
set -euo pipefail
# shellcheck source=deploy/cluster/postgres/lib.sh
. "$(dirname "$0")/lib.sh"
type=${1:-incr}
case $type in full | diff | incr) ;; *) die "usage: backup.sh [full|diff|incr]" ;; esac
start=$(date +%s.%N)
as_pg pgbackrest --config="$BACKREST_CONF" --stanza="$STANZA" --type="$type" backup
log "$type backup done in $(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"
as_pg pgbackrest --config="$BACKREST_CONF" --stanza="$STANZA" info
