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

pg_up() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null || python3 - <<'PY'
import socket, sys
s = socket.socket(); s.settimeout(1)
sys.exit(s.connect_ex(("127.0.0.1", 5432)))
PY
}
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }
rabbit_up() { python3 - <<'PY'
import socket, sys
s = socket.socket(); s.settimeout(1)
sys.exit(s.connect_ex(("127.0.0.1", 5672)))
PY
}

nats_up() { python3 - <<'PY'
import socket, sys
s = socket.socket(); s.settimeout(1)
sys.exit(s.connect_ex(("127.0.0.1", 4222)))
PY
}
# JetStream's store for a NATS server started here (kept across runs of the suite).
NATS_STORE=${NATS_STORE:-${TMPDIR:-/tmp}/django-orders-nats}

status=0
for service in "$@"; do
  case "$service" in
    postgres)
      if ! pg_up; then
        if command -v pg_lsclusters >/dev/null; then
          echo "PostgreSQL is down: starting the local cluster"
          pg_lsclusters --no-header | while read -r version cluster _; do
            pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" start || true
          done
          wait_for PostgreSQL 30 pg_up || status=1
        else
          echo "error: nothing answers on 127.0.0.1:5432 and no local PostgreSQL is installed." >&2
          echo "       Start PostgreSQL 13+ there (user postgres, trust auth), set DATABASE_URL," >&2
          echo "       or run the suite on SQLite: make test DB=sqlite" >&2
          status=1
        fi
      fi ;;
    redis)
      if ! redis_up; then
        if command -v redis-server >/dev/null; then
          echo "Redis is down: starting it"
          redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
          wait_for Redis 20 redis_up || status=1
        else
          echo "warning: no Redis on 127.0.0.1:6379; the Redis publisher tests will be skipped" >&2
        fi
      fi ;;
    rabbitmq)
      if ! rabbit_up; then
        if command -v rabbitmq-server >/dev/null; then
          echo "RabbitMQ is down: starting it"
          rabbitmq-server -detached >/dev/null 2>&1
          wait_for RabbitMQ 90 rabbit_up || status=1
        else
          echo "warning: no RabbitMQ on 127.0.0.1:5672; the RabbitMQ publisher tests will be skipped" >&2
        fi
      fi ;;
    nats)
      if ! nats_up; then
        if command -v nats-server >/dev/null; then
          echo "NATS is down: starting it with JetStream (store: $NATS_STORE)"
          mkdir -p "$NATS_STORE"
          # nats-server has no daemon flag: detach it, its log next to its store.
          nohup nats-server -a 127.0.0.1 -p 4222 -js -sd "$NATS_STORE" \
            >"$NATS_STORE/server.log" 2>&1 </dev/null &
          disown
          wait_for NATS 20 nats_up || status=1
        else
          echo "warning: no NATS on 127.0.0.1:4222; the NATS publisher tests will be skipped" >&2
        fi
      fi ;;
  esac
done
exit $status
