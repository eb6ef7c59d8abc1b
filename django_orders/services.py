"""The domain rules of an order: create, confirm, close.

Every transition bumps ``version`` by exactly one, records its ``order.*`` event in the
same transaction, and sends its Django signal after commit. Views translate HTTP to these
calls and back; they hold no rules of their own.

The transitions work on an order locked with :func:`get_order_for_update`, inside a
transaction: the lock is what makes "check the version, then write" atomic, so of N
concurrent confirms with the same ``If-Match`` exactly one succeeds.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from django.db import router, transaction
from django.utils import timezone

from django_orders import signals
from django_orders.conf import orders_settings
from django_orders.models import Order, OutboxEvent
from django_orders.outbox import recording as events


class InvalidTransition(Exception):
    """The order's status does not allow the requested transition."""

    def __init__(self, order: Order, target: str) -> None:
        super().__init__(
            f"An order that is {Order.Status(order.status).value} cannot become "
            f"{Order.Status(target).value}."
        )
        self.order = order
        self.target = target


def create_order(
    tenant_id: str,
    *,
    total_cents: int | None = None,
    currency: str | None = None,
    metadata: Mapping[str, str] | None = None,
) -> Order:
    """Create a draft order (version 1) and its ``order.created`` event."""
    now = timezone.now()
    order = Order(
        tenant_id=tenant_id,
        total_cents=total_cents,
        currency=currency or orders_settings.DEFAULT_CURRENCY,
        metadata=dict(metadata or {}),
        created_at=now,
        updated_at=now,
    )
    db = router.db_for_write(Order)
    # No savepoint: inside a caller's transaction an error must roll back the whole unit.
    with transaction.atomic(using=db, savepoint=False):
        # The order, its event and the NOTIFY in one round trip on PostgreSQL, as
        # statements built once (docs/benchmarks.md, Findings 3-4).
        if router.db_for_write(OutboxEvent) == db:
            event = events.build_order_event(order, events.ORDER_CREATED)
            events.insert_with_notify(db, [order, event])
        else:  # pragma: no cover - a host routing the outbox elsewhere
            order.save(using=db, force_insert=True)
            events.record_order_event(order, events.ORDER_CREATED)
        _send_on_commit(signals.order_created, order, db)
    return order


def get_order_for_update(tenant_id: str, order_id: uuid.UUID | str) -> Order:
    """The tenant's order, locked until the end of the transaction.

    Raises :class:`Order.DoesNotExist` for a missing order and for another tenant's order
    alike: the two are indistinguishable by design.
    """
    return Order.objects.select_for_update().get(tenant_id=tenant_id, pk=order_id)


def confirm_order(order: Order, *, total_cents: int) -> Order:
    """draft → confirmed, setting ``totalCents``. ``order`` must be locked."""
    if order.status != Order.Status.DRAFT:
        raise InvalidTransition(order, Order.Status.CONFIRMED)
    now = timezone.now()
    order.status = Order.Status.CONFIRMED
    order.total_cents = total_cents
    order.confirmed_at = now
    return _save_transition(
        order,
        now,
        events.ORDER_CONFIRMED,
        signals.order_confirmed,
        extra_fields=("total_cents", "confirmed_at"),
    )


def close_order(order: Order) -> Order:
    """confirmed → closed. ``order`` must be locked."""
    if order.status != Order.Status.CONFIRMED:
        raise InvalidTransition(order, Order.Status.CLOSED)
    now = timezone.now()
    order.status = Order.Status.CLOSED
    order.closed_at = now
    return _save_transition(
        order, now, events.ORDER_CLOSED, signals.order_closed, extra_fields=("closed_at",)
    )


def _save_transition(
    order: Order, now: Any, event_type: str, signal: Any, *, extra_fields: tuple[str, ...]
) -> Order:
    order.version += 1
    order.updated_at = now
    db = router.db_for_write(Order)
    # No savepoint: inside a caller's transaction an error must roll back the whole unit.
    with transaction.atomic(using=db, savepoint=False):
        order.save(using=db, update_fields=("status", "version", "updated_at", *extra_fields))
        events.record_order_event(order, event_type)
        _send_on_commit(signal, order, db)
    return order


def _send_on_commit(signal: Any, order: Order, using: str) -> None:
    transaction.on_commit(lambda: signal.send(sender=Order, order=order), using=using)
