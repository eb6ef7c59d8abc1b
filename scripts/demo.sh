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

"$PY" manage.py migrate --noinput

# Job control puts the relay in its own process group: Ctrl+C reaches the server only,
# and the trap below stops the relay with one SIGTERM (it finishes the batch in hand).
set -m
"$PY" manage.py orders_outbox_relay &
RELAY_PID=$!
set +m

stop_relay() {
  if kill -0 "$RELAY_PID" 2>/dev/null; then
    kill -TERM "$RELAY_PID" 2>/dev/null || true
    wait "$RELAY_PID" 2>/dev/null || true
  fi
}
trap stop_relay EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

cat <<CURL

  django-orders demo: the API on ${BASE}, the outbox relay (logging publisher) beside it.
  Every change prints its CloudEvent below (order.created / order.confirmed / order.closed).

  Swagger UI: ${BASE}/docs/     OpenAPI schema: ${BASE}/schema/     Admin: ${BASE}/admin/

  Try it (another terminal):

    # create a draft order (idempotent: run it twice, get the same order back)
    curl -si -X POST ${BASE}/orders -H 'X-Tenant-Id: shop-1' \\
         -H 'Idempotency-Key: demo-1' -H 'Content-Type: application/json' \\
         -d '{"currency": "EUR", "metadata": {"ref": "A-1"}}'

    ORDER=\$(curl -s -X POST ${BASE}/orders -H 'X-Tenant-Id: shop-1' \\
         -H 'Idempotency-Key: demo-1' -H 'Content-Type: application/json' \\
         -d '{"currency": "EUR", "metadata": {"ref": "A-1"}}' \\
         | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')

    # read it (note the ETag)
    curl -si ${BASE}/orders/\$ORDER -H 'X-Tenant-Id: shop-1'

    # confirm version 1 (If-Match), then close version 2
    curl -si -X PATCH ${BASE}/orders/\$ORDER/confirm -H 'X-Tenant-Id: shop-1' \\
         -H 'If-Match: "1"' -H 'Content-Type: application/json' -d '{"totalCents": 1250}'
    curl -si -X POST ${BASE}/orders/\$ORDER/close -H 'X-Tenant-Id: shop-1' -H 'If-Match: "2"'

    # list the tenant's orders, newest first
    curl -si "${BASE}/orders?limit=10" -H 'X-Tenant-Id: shop-1'

  Outbox backlog: (cd example_project && $PY manage.py orders_outbox_status)
  Stop with Ctrl+C (stops the relay too).

CURL

"$PY" manage.py runserver "127.0.0.1:${PORT}" --noreload
