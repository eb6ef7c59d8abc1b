"""docs/guide/publishers.md: a claimed event's CloudEvent is the one its row gives, `time` included
(four-digit years: the PostgreSQL claim formats it, the ORM store in Python)."""

import datetime as dt

import pytest

from django_orders import services
from django_orders.cloudevents import to_cloudevent
from django_orders.models import OutboxEvent
from django_orders.outbox.postgres import claim_store_for

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


@pytest.mark.parametrize("year", [999, 2026])
def test_claimed_cloudevent_equals_the_rows(year: int) -> None:
    services.create_order("shop-1", currency="EUR")
    OutboxEvent.objects.update(created_at=dt.datetime(year, 1, 2, 3, 4, 5, 0, tzinfo=dt.UTC))
    claim = claim_store_for("default").claim(10)
    assert claim is not None
    (event,) = claim.events
    assert to_cloudevent(event) == to_cloudevent(OutboxEvent.objects.get())
    assert event.created_at == OutboxEvent.objects.get().created_at
