"""The steps of tests/test_adoption.py, each run in a process of its own (which order model
is in force is fixed per process): ``python -m tests.adoption.steps <step>`` with
``DJANGO_SETTINGS_MODULE`` set. Each prints one JSON document for the test to check."""

from __future__ import annotations

import json
import sys
from typing import Any

import django


def before() -> dict[str, Any]:
    """With the package's model: a draft and a confirmed order, as the API shows them."""
    from django.db import transaction

    from django_orders import services

    draft = services.create_order("shop-1", total_cents=100, metadata={"ref": "A-1"})
    created = services.create_order("shop-1")
    with transaction.atomic():
        locked = services.get_order_for_update("shop-1", created.id)
        confirmed = services.confirm_order(locked, total_cents=7)
    return {"orders": [draft.to_dict(), confirmed.to_dict()]}


def after() -> dict[str, Any]:
    """With the host's model on the same table: what the API answers, and a new change."""
    from django.db import connection
    from django.test import Client

    from django_orders.models import OutboxEvent, get_order_model

    client = Client(headers={"X-Tenant-Id": "shop-1"})
    listed = client.get("/orders").json()["items"]
    draft_id = listed[-1]["id"]  # the older one
    confirmed = client.patch(
        f"/orders/{draft_id}/confirm",
        json.dumps({"totalCents": 100}),
        content_type="application/json",
        headers={"If-Match": '"1"'},
    )
    created = client.post(
        "/orders", "{}", content_type="application/json", headers={"Idempotency-Key": "adopted"}
    )
    with connection.cursor() as cursor:
        columns = [
            c.name
            for c in connection.introspection.get_table_description(cursor, "django_orders_order")
        ]
        indexes = sorted(connection.introspection.get_constraints(cursor, "django_orders_order"))
    return {
        "model": get_order_model()._meta.label,
        "table": get_order_model()._meta.db_table,
        "listed": listed,
        "confirm": [confirmed.status_code, confirmed.json()],
        "create": [created.status_code, created.json()],
        "event": OutboxEvent.objects.filter(aggregate_id=draft_id, aggregate_version=2)
        .values_list("payload", flat=True)
        .get(),
        "columns": columns,
        "constraints": indexes,
    }


if __name__ == "__main__":
    django.setup()
    print(json.dumps({"before": before, "after": after}[sys.argv[1]]()))
