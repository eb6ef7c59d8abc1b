"""Recording outbox events inside the transaction that makes the change.

:func:`record_event` inserts the event row and, on PostgreSQL, sends ``NOTIFY`` on
:data:`NOTIFY_CHANNEL` in the same transaction, so a listening relay wakes the moment the
change commits (a notification is delivered only on commit and dropped on rollback).
"""

from __future__ import annotations

from django.db import connections, router

from django_orders.models import Order, OutboxEvent

NOTIFY_CHANNEL = "django_orders_outbox"

ORDER_CREATED = "order.created"
ORDER_CONFIRMED = "order.confirmed"
ORDER_CLOSED = "order.closed"


def record_event(order: Order, event_type: str) -> OutboxEvent:
    """Write ``event_type`` for ``order`` as it stands now. Call inside the transaction."""
    event = OutboxEvent(
        tenant_id=order.tenant_id,
        aggregate_type="order",
        aggregate_id=order.id,
        aggregate_version=order.version,
        type=event_type,
        payload=order.to_dict(),
        created_at=order.updated_at,
        available_at=order.updated_at,
    )
    db = router.db_for_write(OutboxEvent)
    event.save(using=db, force_insert=True)
    notify_relays(db)
    return event


def notify_relays(using: str) -> None:
    """Wake listening relays when the current transaction commits (PostgreSQL only)."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        # Identical notifications in one transaction are folded into one by PostgreSQL.
        cursor.execute(f"NOTIFY {NOTIFY_CHANNEL}")
