#!/usr/bin/env bash
# Make sure the services the tests need answer on loopback, starting local ones that are
# installed but down. Usage: ensure-services.sh [postgres] [rabbitmq] [redis] [nats]
set -u

wait_for() {  # wait_for NAME SECONDS CMD...
  local name=$1 seconds=$2; shift 2
  for _ in $(seq 1 "$seconds"); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  echo "error: $name did not come up within ${seconds}s" >&2
  return 1
}

port_open() {  # port_open PORT: something accepts connections on 127.0.0.1:PORT
  python3 - "$1" <<'PY'
import socket, sys
s = socket.socket(); s.settimeout(1)
sys.exit(s.connect_ex(("127.0.0.1", int(sys.argv[1]))))
PY
}

pg_up() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null || port_open 5432; }
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }
rabbit_up() { port_open 5672; }
nats_up() { port_open 4222; }

# JetStream's store for a NATS server started here (kept across runs of the suite).
NATS_STORE=${NATS_STORE:-${TMPDIR:-/tmp}/django-orders-nats}

start_postgres() {
  echo "PostgreSQL is down: starting the local cluster"
  pg_lsclusters --no-header | while read -r version cluster _; do
    pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" start || true
  done
}
start_redis() {
  echo "Redis is down: starting it"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
}
start_rabbitmq() {
  echo "RabbitMQ is down: starting it"
  rabbitmq-server -detached >/dev/null 2>&1
}
start_nats() {
  echo "NATS is down: starting it with JetStream (store: $NATS_STORE)"
  mkdir -p "$NATS_STORE"
  # nats-server has no daemon flag: detach it, its log next to its store.
  nohup nats-server -a 127.0.0.1 -p 4222 -js -sd "$NATS_STORE" \
    >"$NATS_STORE/server.log" 2>&1 </dev/null &
  disown
}

# ensure NAME PROBE SECONDS COMMAND START MISSING: where PROBE fails, START the service if
# COMMAND is installed and wait up to SECONDS for PROBE to pass; else say MISSING. Fails
# when the service does not come up, or is missing and MISSING is an error (not a warning).
ensure() {
  local name=$1 probe=$2 seconds=$3 command=$4 start=$5 missing=$6
  "$probe" && return 0
  if ! command -v "$command" >/dev/null; then
    echo "$missing" >&2
    [[ $missing != error:* ]]
    return
  fi
  "$start"
  wait_for "$name" "$seconds" "$probe"
}

status=0
for service in "$@"; do
  case "$service" in
    postgres) ensure PostgreSQL pg_up 30 pg_lsclusters start_postgres \
      "error: nothing answers on 127.0.0.1:5432 and no local PostgreSQL is installed.
       Start PostgreSQL 13+ there (user postgres, trust auth), set DATABASE_URL,
       or run the suite on SQLite: make test DB=sqlite" ;;
    redis) ensure Redis redis_up 20 redis-server start_redis \
      "warning: no Redis on 127.0.0.1:6379; the Redis publisher tests will be skipped" ;;
    rabbitmq) ensure RabbitMQ rabbit_up 90 rabbitmq-server start_rabbitmq \
      "warning: no RabbitMQ on 127.0.0.1:5672; the RabbitMQ publisher tests will be skipped" ;;
    nats) ensure NATS nats_up 20 nats-server start_nats \
      "warning: no NATS on 127.0.0.1:4222; the NATS publisher tests will be skipped" ;;
  esac || status=1
done
exit $status
