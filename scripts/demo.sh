#!/usr/bin/env bash
# `make demo`: the example project on SQLite, the outbox relay beside the web server.
# Usage: bash scripts/demo.sh [python]   (DEMO_PORT=8001 to use another port)
set -euo pipefail

PY=${1:-python3}
PORT=${DEMO_PORT:-8000}
BASE="http://127.0.0.1:${PORT}"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
case "$PY" in
  /*) ;;
  */*) PY="$PWD/$PY" ;;              # a relative path, e.g. make's .venv/bin/python
  *) PY=$(command -v "$PY") ;;      # a command on PATH
esac
cd "$ROOT/example_project"

case "$PORT" in
  '' | *[!0-9]*) echo "DEMO_PORT must be a port number, not '${PORT}'." >&2; exit 2 ;;
esac
# Before anything starts (the relay above all): the server would fail on a taken port only
# after the relay had started. SO_REUSEADDR as the server sets it, so a port left in
# TIME_WAIT by the previous run counts as free.
if ! "$PY" - "$PORT" <<'PY'
import socket, sys

probe = socket.socket()
probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    probe.bind(("127.0.0.1", int(sys.argv[1])))
except (OSError, OverflowError):
    sys.exit(1)
PY
then
  cat >&2 <<TAKEN
Port ${PORT} on 127.0.0.1 is already in use (another \`make demo\`, or another server).
Stop it, or run the demo on another port: DEMO_PORT=$((PORT + 1)) make demo
TAKEN
  exit 1
fi

"$PY" manage.py migrate --noinput

# Job control puts the relay in its own process group: Ctrl+C reaches the server (and
# make) only, and the EXIT trap stops the relay with one SIGTERM (it finishes the batch in
# hand). The relay's "send it again to exit at once" is advice for an operator who sent
# that signal; here the demo sent it and waits, so the filter drops the advice.
QUIET_STOP='import sys
for line in sys.stdin:
    sys.stdout.write(line.replace(" (send it again to exit at once)", ""))'
set -m
"$PY" manage.py orders_outbox_relay 2>&1 | "$PY" -u -c "$QUIET_STOP" >&2 &
RELAY_PID=$(jobs -p %+) # the first process of the pipeline: the relay
set +m

SERVING=
stop_relay() {
  kill -TERM "$RELAY_PID" 2>/dev/null || true
  wait 2>/dev/null || true # the relay's last lines, through the filter
}
trap stop_relay EXIT
# Ctrl+C is how the demo is meant to stop: once the server runs, it is a normal end (exit
# 0, so make reports no error); before that it interrupts the set-up (130).
trap 'if [ -n "$SERVING" ]; then exit 0; else exit 130; fi' INT
trap 'exit 143' TERM

cat <<CURL

  django-orders demo: the API on ${BASE}, the outbox relay (logging publisher) beside it.
  Every change prints its CloudEvent below (order.created / order.confirmed / order.closed,
  and the project's own com.example.customer.credit_limit_changed).

  Swagger UI: ${BASE}/docs/     OpenAPI schema: ${BASE}/schema/     Admin: ${BASE}/admin/

  Try it in another terminal (paste it as often as you like, in this run or any other):

    # show an answer, and keep the order's id / its ETag from it
    keep_id() { tee /dev/stderr | tail -n 1 | python3 -c 'import json, sys; print(json.load(sys.stdin).get("id", ""))'; echo >&2; }
    keep_etag() { tee /dev/stderr | awk 'tolower(\$1) == "etag:" { print \$2 }' | tr -d '\r'; echo >&2; }

    # create a draft order for customer 1 (Acme Ltd) under a fresh Idempotency-Key
    KEY=\$(python3 -c 'import uuid; print(uuid.uuid4())')
    ORDER=\$(curl -si -X POST ${BASE}/orders -H 'X-Tenant-Id: shop-1' \\
         -H "Idempotency-Key: \$KEY" -H 'Content-Type: application/json' \\
         -d '{"currency": "EUR", "customerId": 1, "metadata": {"ref": "A-1"}}' | keep_id)

    # the same request again (a client's retry): the same order, Idempotent-Replayed: true
    curl -si -X POST ${BASE}/orders -H 'X-Tenant-Id: shop-1' \\
         -H "Idempotency-Key: \$KEY" -H 'Content-Type: application/json' \\
         -d '{"currency": "EUR", "customerId": 1, "metadata": {"ref": "A-1"}}'; echo

    # read it, keep its ETag
    ETAG=\$(curl -si ${BASE}/orders/\$ORDER -H 'X-Tenant-Id: shop-1' | keep_etag)

    # confirm above Acme's credit limit of 1,000.00: refused, 422 credit_limit_exceeded
    curl -si -X PATCH ${BASE}/orders/\$ORDER/confirm -H 'X-Tenant-Id: shop-1' \\
         -H "If-Match: \$ETAG" -H 'Content-Type: application/json' \\
         -d '{"totalCents": 250000}'; echo

    # confirm the version read (If-Match), keep the new ETag; then close that version
    ETAG=\$(curl -si -X PATCH ${BASE}/orders/\$ORDER/confirm -H 'X-Tenant-Id: shop-1' \\
         -H "If-Match: \$ETAG" -H 'Content-Type: application/json' \\
         -d '{"totalCents": 1250}' | keep_etag)
    curl -si -X POST ${BASE}/orders/\$ORDER/close -H 'X-Tenant-Id: shop-1' -H "If-Match: \$ETAG"; echo

    # list the tenant's orders, newest first
    curl -si "${BASE}/orders?limit=10" -H 'X-Tenant-Id: shop-1'; echo

    # the project's own endpoint: set Acme's credit limit (1,000.00 again); its event,
    # com.example.customer.credit_limit_changed, goes out beside the orders' events, and
    # every event carries the request's X-Correlation-Id as "correlationid"
    curl -si -X PUT ${BASE}/customers/1/credit-limit -H 'X-Tenant-Id: shop-1' \\
         -H "Idempotency-Key: \$(python3 -c 'import uuid; print(uuid.uuid4())')" \\
         -H 'X-Correlation-Id: demo-limit' -H 'Content-Type: application/json' \\
         -d '{"creditLimitCents": 100000}'; echo

  Outbox backlog: (cd example_project && $PY manage.py orders_outbox_status)
  Stop with Ctrl+C (stops the relay too).

CURL

SERVING=1
"$PY" manage.py runserver "127.0.0.1:${PORT}" --noreload
