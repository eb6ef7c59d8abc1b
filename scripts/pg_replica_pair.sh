#!/usr/bin/env bash
# A throw-away PostgreSQL primary and its streaming replica, on free loopback ports, for the
# replica tests (docs/guide/replicas.md) and anyone trying the router by hand.
#
#   pg_replica_pair.sh run -- CMD ...   create the pair, run CMD with ORDERS_PRIMARY_URL and
#                                       ORDERS_REPLICA_URL set, tear the pair down, exit as CMD
#   pg_replica_pair.sh up DIR           create the pair under DIR (empty or missing) and print
#                                       the two URLs as shell assignments
#   pg_replica_pair.sh down DIR         stop the pair and delete DIR
#
# The replica is `pg_basebackup -R` of the primary: a hot standby that replays the primary's
# WAL as it streams in. Both run as the `postgres` user when started by root (PostgreSQL
# refuses to run as root), with trust authentication on loopback only.
#
# Where the server binaries (initdb, pg_ctl, pg_basebackup) are missing, `run` still runs CMD,
# with ORDERS_REPLICA_UNAVAILABLE saying why: the tests then skip with that reason.
# PG_BINDIR overrides where the binaries are looked for.
set -euo pipefail

find_bindir() {
  if [[ -n "${PG_BINDIR:-}" ]]; then echo "$PG_BINDIR"; return; fi
  local dir
  # Debian and Ubuntu keep the server binaries out of PATH, one directory per version.
  while IFS= read -r dir; do
    if [[ -x "$dir/initdb" ]]; then echo "$dir"; return; fi
  done < <(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r)
  if command -v initdb >/dev/null; then dirname "$(command -v initdb)"; return; fi
  echo ""
}

BINDIR=$(find_bindir)

missing_binaries() {
  local name
  if [[ -z "$BINDIR" ]]; then echo "no PostgreSQL server binaries (initdb) found"; return; fi
  for name in initdb pg_ctl pg_basebackup pg_isready; do
    if [[ ! -x "$BINDIR/$name" ]]; then echo "$BINDIR/$name is missing"; return; fi
  done
  echo ""
}

# Run a PostgreSQL binary as the postgres user when we are root, as ourselves otherwise.
as_pg() {
  if [[ $(id -u) -eq 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_ready() {  # wait_ready PORT
  local _
  for _ in $(seq 1 100); do
    if "$BINDIR/pg_isready" -h 127.0.0.1 -p "$1" -q; then return 0; fi
    sleep 0.1
  done
  echo "error: PostgreSQL on port $1 did not come up" >&2
  return 1
}

start() {  # start DATADIR PORT
  as_pg "$BINDIR/pg_ctl" -D "$1" -l "$1.log" -w -t 60 \
    -o "-p $2 -k $(dirname "$1") -c listen_addresses=127.0.0.1" start >/dev/null
  wait_ready "$2"
}

up() {  # up DIR
  local dir=$1 primary_port replica_port
  mkdir -p "$dir"
  if [[ $(id -u) -eq 0 ]]; then chown postgres: "$dir"; fi
  primary_port=$(free_port)
  replica_port=$(free_port)
  while [[ "$replica_port" == "$primary_port" ]]; do replica_port=$(free_port); done

  as_pg "$BINDIR/initdb" -D "$dir/primary" -U postgres --auth=trust -E UTF8 --no-instructions \
    >"$dir/initdb.log"
  cat >>"$dir/primary/postgresql.conf" <<CONF
wal_level = replica
max_wal_senders = 4
hot_standby = on
fsync = off
full_page_writes = off
shared_buffers = 32MB
CONF
  # Trust on loopback for the tests' clients and for the replica's replication connection.
  cat >"$dir/primary/pg_hba.conf" <<HBA
local all all trust
host all all 127.0.0.1/32 trust
local replication all trust
host replication all 127.0.0.1/32 trust
HBA
  start "$dir/primary" "$primary_port"

  # -R writes standby.signal and primary_conninfo: the copy starts as a streaming replica.
  as_pg "$BINDIR/pg_basebackup" -h 127.0.0.1 -p "$primary_port" -U postgres \
    -D "$dir/replica" -R -X stream -c fast >/dev/null
  start "$dir/replica" "$replica_port"

  echo "$primary_port $replica_port" >"$dir/ports"
  echo "ORDERS_PRIMARY_URL=postgres://postgres@127.0.0.1:$primary_port/postgres"
  echo "ORDERS_REPLICA_URL=postgres://postgres@127.0.0.1:$replica_port/postgres"
}

down() {  # down DIR
  local dir=$1 node
  for node in replica primary; do
    if [[ -f "$dir/$node/postmaster.pid" ]]; then
      as_pg "$BINDIR/pg_ctl" -D "$dir/$node" -m immediate -w stop >/dev/null 2>&1 || true
    fi
  done
  rm -rf "$dir"
}

case "${1:-}" in
  up)
    [[ $# -eq 2 ]] || { echo "usage: $0 up DIR" >&2; exit 2; }
    reason=$(missing_binaries)
    if [[ -n "$reason" ]]; then echo "error: $reason" >&2; exit 1; fi
    up "$2" ;;
  down)
    [[ $# -eq 2 ]] || { echo "usage: $0 down DIR" >&2; exit 2; }
    down "$2" ;;
  run)
    shift
    [[ "${1:-}" == "--" ]] && shift
    [[ $# -ge 1 ]] || { echo "usage: $0 run -- CMD ..." >&2; exit 2; }
    reason=$(missing_binaries)
    if [[ -n "$reason" ]]; then
      echo "pg_replica_pair: $reason; the replica tests will be skipped" >&2
      ORDERS_REPLICA_UNAVAILABLE="$reason" "$@"
      exit $?
    fi
    dir=$(mktemp -d /tmp/orders-replica-pair.XXXXXX)
    trap 'down "$dir"' EXIT
    if ! assignments=$(up "$dir"); then
      cat "$dir"/*.log >&2 2>/dev/null || true
      exit 1
    fi
    mapfile -t variables <<<"$assignments"  # NAME=value lines, no spaces in them
    status=0
    env "${variables[@]}" "$@" || status=$?
    exit $status ;;
  *)
    echo "usage: $0 run -- CMD ... | up DIR | down DIR" >&2
    exit 2 ;;
esac
