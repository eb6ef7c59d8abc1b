"""``django_orders.sql``: the cached raw INSERTs of the create path (benchmarks Findings 3-4).

The rows they write are the ORM's, field for field; hosts listening to ``post_save`` still
hear it; and without client-side binding (psycopg 3's ``server_side_binding``) or off
PostgreSQL, the statements go one per ``execute``.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.db.models.signals import post_save
from django.test.utils import CaptureQueriesContext

from django_orders import services
from django_orders.models import Order, OutboxEvent

pytestmark = pytest.mark.django_db


def test_a_created_order_reads_back_as_written() -> None:
    order = services.create_order("shop-1", total_cents=7, currency="EUR", metadata={"b": "é"})
    stored = Order.objects.get(pk=order.id)
    assert stored.to_dict() == order.to_dict()
    event = OutboxEvent.objects.get(aggregate_id=order.id)
    assert event.payload == order.to_dict()
    assert (event.status, event.attempts, event.created_at) == ("pending", 0, order.updated_at)
    assert order._state.adding is False
    assert order._state.db == "default"


def test_order_event_and_notify_share_one_execute_on_postgres() -> None:
    with CaptureQueriesContext(connection) as captured:
        services.create_order("shop-1")
    writes = [q["sql"] for q in captured.captured_queries if "INSERT" in q["sql"]]
    if connection.vendor == "postgresql":
        (statement,) = writes
        assert statement.count("INSERT INTO") == 2
        assert statement.rstrip().endswith("NOTIFY django_orders_outbox")
    else:
        assert len(writes) == 2


@pytest.mark.postgres
def test_with_server_side_binding_the_statements_go_one_by_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    options = {**connection.settings_dict.get("OPTIONS", {}), "server_side_binding": True}
    monkeypatch.setitem(connection.settings_dict, "OPTIONS", options)
    with CaptureQueriesContext(connection) as captured:
        order = services.create_order("shop-1")
    statements = [q["sql"] for q in captured.captured_queries]
    assert sum(s.startswith("INSERT INTO") for s in statements) == 2
    assert "NOTIFY django_orders_outbox" in statements
    assert not any(";" in s for s in statements)
    assert OutboxEvent.objects.filter(aggregate_id=order.id).exists()


def test_a_post_save_receiver_still_hears_the_order_and_its_event() -> None:
    heard: list[tuple[type, bool]] = []

    def receiver(sender: type, created: bool, **kwargs: Any) -> None:
        heard.append((sender, created))

    post_save.connect(receiver, sender=Order)
    post_save.connect(receiver, sender=OutboxEvent)
    try:
        services.create_order("shop-1")
    finally:
        post_save.disconnect(receiver, sender=Order)
        post_save.disconnect(receiver, sender=OutboxEvent)
    assert heard == [(Order, True), (OutboxEvent, True)]
