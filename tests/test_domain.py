"""The domain layer (``django_orders.services``): transitions, versions and events."""

from __future__ import annotations

import uuid

import pytest
from django.db import transaction

from django_orders import services
from django_orders.models import Order, OutboxEvent

pytestmark = pytest.mark.django_db


def confirm(order: Order, total_cents: int = 10) -> Order:
    with transaction.atomic():
        return services.confirm_order(
            services.get_order_for_update(order.tenant_id, order.id), total_cents=total_cents
        )


def close(order: Order) -> Order:
    with transaction.atomic():
        return services.close_order(services.get_order_for_update(order.tenant_id, order.id))


def test_create_makes_a_version_1_draft_and_its_event() -> None:
    order = services.create_order("t1", total_cents=5, currency="EUR", metadata={"a": "b"})

    stored = Order.objects.get()
    assert stored.to_dict() == order.to_dict()
    assert (order.status, order.version, order.total_cents) == ("draft", 1, 5)
    assert order.id.version == 7
    event = OutboxEvent.objects.get()
    assert (event.type, event.aggregate_version, event.tenant_id) == ("order.created", 1, "t1")
    assert event.payload == order.to_dict()


def test_each_transition_bumps_the_version_by_exactly_one_and_records_its_event() -> None:
    order = services.create_order("t1")
    confirmed = confirm(order, 42)
    closed = close(confirmed)

    assert closed.version == 3
    assert Order.objects.get().version == 3
    events = list(OutboxEvent.objects.order_by("aggregate_version"))
    assert [(e.type, e.aggregate_version) for e in events] == [
        ("order.created", 1),
        ("order.confirmed", 2),
        ("order.closed", 3),
    ]
    assert events[1].payload["totalCents"] == 42
    assert events[1].payload["status"] == "confirmed"
    assert events[2].payload == Order.objects.get().to_dict()


@pytest.mark.parametrize(
    ("steps", "action", "status"),
    [
        ((), close, "draft"),
        ((confirm,), confirm, "confirmed"),
        ((confirm, close), close, "closed"),
        ((confirm, close), confirm, "closed"),
    ],
)
def test_invalid_transitions_change_nothing(steps: tuple, action: object, status: str) -> None:
    order = services.create_order("t1")
    for step in steps:
        order = step(order)
    before = OutboxEvent.objects.count()

    with pytest.raises(services.InvalidTransition) as info:
        action(order)  # type: ignore[operator]

    assert info.value.order.status == status
    assert Order.objects.get().status == status
    assert OutboxEvent.objects.count() == before


def test_another_tenants_order_is_as_missing_as_a_missing_one() -> None:
    order = services.create_order("t1")
    with transaction.atomic():
        with pytest.raises(Order.DoesNotExist):
            services.get_order_for_update("t2", order.id)
        with pytest.raises(Order.DoesNotExist):
            services.get_order_for_update("t1", uuid.uuid4())


def test_a_failing_transaction_keeps_neither_the_change_nor_its_event() -> None:
    order = services.create_order("t1")

    def confirm_then_fail() -> None:
        with transaction.atomic():
            confirm(order)
            raise RuntimeError("rollback")

    with pytest.raises(RuntimeError):
        confirm_then_fail()
    assert Order.objects.get().status == "draft"
    assert list(OutboxEvent.objects.values_list("type", flat=True)) == ["order.created"]
