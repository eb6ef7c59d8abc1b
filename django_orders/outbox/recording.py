"""Recording outbox events inside the transaction that makes the change.

:func:`record_event` inserts the event row and, on PostgreSQL, sends ``NOTIFY`` on
:data:`NOTIFY_CHANNEL` in the same transaction, so a listening relay wakes the moment the
change commits (a notification is delivered only on commit and dropped on rollback).
On PostgreSQL the event's ``INSERT`` and the ``NOTIFY`` travel in one round trip
(docs/benchmarks.md, Findings 3-4).
"""

from __future__ import annotations

from django.db import connections, router
from django.db.models import Model

from django_orders import sql
from django_orders.models import Order, OutboxEvent

NOTIFY_CHANNEL = "django_orders_outbox"
NOTIFY_SQL = f"NOTIFY {NOTIFY_CHANNEL}"

ORDER_CREATED = "order.created"
ORDER_CONFIRMED = "order.confirmed"
ORDER_CLOSED = "order.closed"


def build_event(order: Order, event_type: str) -> OutboxEvent:
    """The (unsaved) ``event_type`` event of ``order`` as it stands now."""
    return OutboxEvent(
        tenant_id=order.tenant_id,
        aggregate_type="order",
        aggregate_id=order.id,
        aggregate_version=order.version,
        type=event_type,
        payload=order.to_dict(),
        created_at=order.updated_at,
        available_at=order.updated_at,
    )


def record_event(order: Order, event_type: str) -> OutboxEvent:
    """Write ``event_type`` for ``order`` as it stands now. Call inside the transaction."""
    event = build_event(order, event_type)
    insert_with_notify(router.db_for_write(OutboxEvent), [event])
    return event


def insert_with_notify(using: str, objs: list[Model]) -> None:
    """INSERT the new rows ``objs`` (an event among them) and wake the relays.

    One ``cursor.execute`` on PostgreSQL (``INSERT …; NOTIFY``); ``Model.save()`` instead
    when a ``pre_save`` / ``post_save`` receiver listens, so hosts see their signals.
    """
    notify = notify_statement(using)
    if sql.can_insert_raw(*{type(obj) for obj in objs}):
        sql.insert_objects(using, objs, then=notify)
        return
    for obj in objs:
        obj.save(using=using, force_insert=True)
    notify_relays(using)


def notify_statement(using: str) -> str | None:
    """The ``NOTIFY`` that wakes listening relays, or ``None`` off PostgreSQL."""
    # Identical notifications in one transaction are folded into one by PostgreSQL.
    return NOTIFY_SQL if connections[using].vendor == "postgresql" else None


def notify_relays(using: str) -> None:
    """Wake listening relays when the current transaction commits (PostgreSQL only)."""
    statement = notify_statement(using)
    if statement is None:
        return
    with connections[using].cursor() as cursor:
        cursor.execute(statement)
