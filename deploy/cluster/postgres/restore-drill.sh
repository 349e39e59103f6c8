#!/usr/bin/env bash
# The backup and restore drill, against the running Patroni cluster (up.sh):
#
#  1. a fresh `storefront_drill` database, migrated and written through :5450 by the app's
#     own code (seed, then customers registered and orders placed: addresses sealed with each
#     customer's data key); a ticker inserts a row every 0.1 s, its acknowledged rows noted;
#  2. the row counts and the audit chain's head are noted, then the time T, then the mistake:
#     TRUNCATE orders CASCADE (every order, line and payment gone);
#  3. pgBackRest restores the latest backup before T plus the archived WAL up to T into a
#     FRESH data directory, started as a new instance on 127.0.0.1:5449 (never touching the
#     cluster), and promoted at T;
#  4. checks on the restored instance: the counts are those before the mistake, every
#     acknowledged tick up to T is there, `storefront audit verify` passes with the same head
#     hash, a sample of orders' addresses decrypts with the master key.
#
# Reports the restore time (restore start to the promoted instance accepting writes) and the
# RPO (T minus the newest row recovered; and the archive lag at the mistake: what a loss of
# the whole cluster at that moment would have cost). KEEP_RESTORE=1 leaves the restored
# instance running; down.sh stops it. Output also in $STATE/drill/report.txt.
set -euo pipefail
# shellcheck source=deploy/cluster/postgres/lib.sh
. "$(dirname "$0")/lib.sh"
load_secrets

RESTORE_PORT=${CLUSTER_RESTORE_PORT:-5449}
DRILL=$STATE/drill
RESTORE=$STATE/restore
PY=$REPO/.venv/bin/python
STOREFRONT=$REPO/.venv/bin/storefront
CHECK=$PG_DIR/restore_check.py
DB=storefront_drill
mkdir -p "$DRILL"
: >"$DRILL/report.txt"
report() { log "$*"; echo "$*" >>"$DRILL/report.txt"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

[ "$(psql_at "$WRITE_PORT" postgres -At -c 'select pg_is_in_recovery()' 2>/dev/null)" = f ] ||
  die "no primary on :$WRITE_PORT: run deploy/cluster/postgres/up.sh first"
[ -x "$STOREFRONT" ] || make -C "$REPO" install >/dev/null
if port_open "$RESTORE_PORT"; then
  if [ -f "$RESTORE/data/postmaster.pid" ]; then
    as_pg "$PGBIN/pg_ctl" -D "$RESTORE/data" -m fast -w stop >/dev/null
  else
    die "port $RESTORE_PORT is taken (set CLUSTER_RESTORE_PORT)"
  fi
fi

# --- 1. the data --------------------------------------------------------------------------------
log "drill database $DB: created fresh, migrated, written through :$WRITE_PORT"
psql_at "$WRITE_PORT" postgres -c "drop database if exists $DB with (force)" \
  -c "create database $DB owner storefront"
if [ ! -f "$DRILL/app.env" ]; then
  (umask 077 && "$STOREFRONT" secrets generate | grep '^STOREFRONT_' >"$DRILL/app.env")
fi
set -a
# shellcheck disable=SC1091
. "$DRILL/app.env"
set +a
export STOREFRONT_ENVIRONMENT=development
app_url() { echo "postgresql://storefront:$PG_APP_PASSWORD@127.0.0.1:$1/$DB"; }
export STOREFRONT_DATABASE_URL
STOREFRONT_DATABASE_URL=$(app_url "$WRITE_PORT")
"$STOREFRONT" migrate | tail -n 1
"$STOREFRONT" seed >/dev/null
"$PY" "$CHECK" write --customers 10

PGPASSWORD=$PG_APP_PASSWORD "$PGBIN/psql" -X -q -h 127.0.0.1 -p "$WRITE_PORT" -U storefront \
  -d "$DB" -c "create table drill_ticks (n bigint primary key, at timestamptz not null)"
ticker() {
  local n=0 at
  while [ ! -f "$DRILL/stop-ticker" ]; do
    n=$((n + 1))
    if at=$(PGPASSWORD=$PG_APP_PASSWORD PGCONNECT_TIMEOUT=2 "$PGBIN/psql" -X -q -At \
      -h 127.0.0.1 -p "$WRITE_PORT" -U storefront -d "$DB" -c \
      "insert into drill_ticks values ($n, clock_timestamp()) returning extract(epoch from at)" \
      2>/dev/null); then
      echo "$n $at" >>"$DRILL/ticks.acked"
    fi
    sleep 0.1
  done
}
rm -f "$DRILL/stop-ticker" "$DRILL/ticks.acked"
ticker &
ticker_pid=$!
trap 'touch "$DRILL/stop-ticker"; wait $ticker_pid 2>/dev/null || true' EXIT
sleep 3

# --- 2. the mistake -------------------------------------------------------------------------------
"$PY" "$CHECK" counts >"$DRILL/counts.before"
"$STOREFRONT" audit verify >"$DRILL/audit.before"
head_before=$(grep -o '[0-9a-f]\{64\}' "$DRILL/audit.before")
sleep 1
target=$(psql_at "$WRITE_PORT" postgres -At -c "select clock_timestamp()")
target_epoch=$(psql_at "$WRITE_PORT" postgres -At -c "select extract(epoch from timestamptz '$target')")
archive_lag=$(psql_at "$WRITE_PORT" postgres -At -c \
  "select round(extract(epoch from now() - last_archived_time)::numeric, 1) from pg_stat_archiver")
PGPASSWORD=$PG_APP_PASSWORD PGOPTIONS='-c client_min_messages=warning' "$PGBIN/psql" -X -q \
  -h 127.0.0.1 -p "$WRITE_PORT" -U storefront -d "$DB" -c "truncate orders cascade"
report "target T = $target; the mistake right after it: TRUNCATE orders CASCADE in $DB"
report "orders on the live cluster now: $(PGPASSWORD=$PG_APP_PASSWORD "$PGBIN/psql" -X -At \
  -h 127.0.0.1 -p "$WRITE_PORT" -U storefront -d "$DB" -c 'select count(*) from orders')" \
  "(before: $(awk '$1 == "orders" { print $2 }' "$DRILL/counts.before"))"
sleep 1
touch "$DRILL/stop-ticker"
wait $ticker_pid 2>/dev/null || true
trap - EXIT
# the WAL past T must be in the repository: `check` switches WAL and waits for its archiving
as_pg pgbackrest --config="$BACKREST_CONF" --stanza="$STANZA" check

# --- 3. restore into a fresh instance -------------------------------------------------------------
log "restoring to T into a fresh data directory ($RESTORE/data, port $RESTORE_PORT)"
rm -rf "$RESTORE"
mkdir -p "$RESTORE/data"
chmod 700 "$RESTORE/data"
sed -n '/^\[global\]/,/^$/p' "$BACKREST_CONF" >"$RESTORE/pgbackrest.conf"
printf '[%s]\npg1-path=%s\npg1-port=%s\npg1-socket-path=%s\n' \
  "$STANZA" "$RESTORE/data" "$RESTORE_PORT" "$RUN" >>"$RESTORE/pgbackrest.conf"
chown -R postgres:postgres "$RESTORE"
t0=$(date +%s.%N)
as_pg pgbackrest --config="$RESTORE/pgbackrest.conf" --stanza="$STANZA" --type=time \
  "--target=$target" --target-action=promote restore
t1=$(date +%s.%N)
# the restored configuration is the old node's (Patroni's): this instance gets its own, with
# no archiving (it must not push into the cluster's repository) and no synchronous standby
as_pg tee "$RESTORE/data/postgresql.conf" >/dev/null <<EOF
include 'postgresql.base.conf'
listen_addresses = '127.0.0.1'
port = $RESTORE_PORT
unix_socket_directories = '$RUN'
cluster_name = 'storefront-restore'
max_connections = 300
max_wal_senders = 10
max_replication_slots = 10
wal_level = replica
hot_standby = on
archive_mode = off
logging_collector = off
EOF
as_pg "$PGBIN/pg_ctl" -D "$RESTORE/data" -l "$RESTORE/postgres.log" -w -t 900 start >/dev/null
until [ "$(psql_at "$RESTORE_PORT" postgres -At -c 'select pg_is_in_recovery()' 2>/dev/null)" = f ]; do
  sleep 0.2
done
t2=$(date +%s.%N)
report "restore time: $(elapsed "$t0" "$t2") s (pgBackRest restore $(elapsed "$t0" "$t1") s," \
  "WAL replay to T and promotion $(elapsed "$t1" "$t2") s); backup used:" \
  "$(grep -o 'restore backup set [^ ,]*' "$STATE/backrest/log/$STANZA-restore.log" | tail -n 1 |
    sed 's/restore backup set //')"

# --- 4. checks ------------------------------------------------------------------------------------
STOREFRONT_DATABASE_URL=$(app_url "$RESTORE_PORT")
failed=0
"$PY" "$CHECK" counts >"$DRILL/counts.after"
if diff -u "$DRILL/counts.before" "$DRILL/counts.after" >"$DRILL/counts.diff"; then
  report "row counts as before the mistake: $(tr '\n' ' ' <"$DRILL/counts.after")"
else
  report "FAIL: row counts differ from before the mistake: $(cat "$DRILL/counts.diff")"
  failed=1
fi
if "$STOREFRONT" audit verify >"$DRILL/audit.after" 2>&1 &&
  grep -q "$head_before" "$DRILL/audit.after"; then
  report "audit verify: $(head -n 1 "$DRILL/audit.after") head hash as before ($head_before)"
else
  report "FAIL: audit verify: $(cat "$DRILL/audit.after")"
  failed=1
fi
if "$PY" "$CHECK" check --sample 20 >"$DRILL/decrypt.out" 2>&1; then
  report "$(cat "$DRILL/decrypt.out")"
else
  report "FAIL: $(cat "$DRILL/decrypt.out")"
  failed=1
fi
# ticks: every acknowledged tick committed up to T is back; the newest one gives the RPO
PGPASSWORD=$PG_APP_PASSWORD "$PGBIN/psql" -X -At -h 127.0.0.1 -p "$RESTORE_PORT" \
  -U storefront -d "$DB" -c "select n from drill_ticks order by n" >"$DRILL/ticks.restored"
missing=$(awk -v t="$target_epoch" 'NR == FNR { have[$1] = 1; next } $2 <= t && !($1 in have)' \
  "$DRILL/ticks.restored" "$DRILL/ticks.acked" | wc -l)
after_t=$(awk -v t="$target_epoch" 'NR == FNR { have[$1] = 1; next } $2 > t && ($1 in have)' \
  "$DRILL/ticks.restored" "$DRILL/ticks.acked" | wc -l)
newest=$(PGPASSWORD=$PG_APP_PASSWORD "$PGBIN/psql" -X -At -h 127.0.0.1 -p "$RESTORE_PORT" \
  -U storefront -d "$DB" -c "select extract(epoch from max(at)) from drill_ticks")
report "ticks: $(wc -l <"$DRILL/ticks.acked") acknowledged, $(wc -l <"$DRILL/ticks.restored")" \
  "restored; acknowledged up to T and missing: $missing; committed after T and restored: $after_t"
report "RPO (point-in-time): $(awk -v a="$newest" -v b="$target_epoch" \
  'BEGIN { printf "%.0f", (b - a) * 1000 }') ms between the newest row" \
  "recovered and T (a tick every ~0.1 s); archive lag at the mistake: ${archive_lag:-?} s" \
  "(archive_timeout 60 s bounds it: the loss if the whole cluster and its WAL were gone then)"
[ "$missing" = 0 ] && [ "$after_t" = 0 ] || failed=1

if [ "${KEEP_RESTORE:-0}" != 1 ]; then
  as_pg "$PGBIN/pg_ctl" -D "$RESTORE/data" -m fast -w stop >/dev/null
fi
if [ $failed = 0 ]; then
  report "restore drill PASSED"
else
  report "restore drill FAILED"
fi
exit $failed
