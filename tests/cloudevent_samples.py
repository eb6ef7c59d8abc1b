"""CloudEvents for publisher tests, built the way the relay builds them.

The outbox rows are constructed in memory (no database needed): publishers only ever see
the output of :func:`django_orders.cloudevents.to_cloudevent`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.utils import timezone

from django_orders.cloudevents import to_cloudevent
from django_orders.ids import uuid7
from django_orders.models import Order, OutboxEvent


def sample_cloudevent(
    event_type: str = "order.created", *, tenant: str = "shop-1", **order_fields: Any
) -> dict[str, Any]:
    """The CloudEvent of a fresh order's event, as the relay hands it to a publisher."""
    now = timezone.now()
    order = Order(
        id=uuid7(),
        tenant_id=tenant,
        currency="USD",
        created_at=now,
        updated_at=now,
        **order_fields,
    )
    event = OutboxEvent(
        id=uuid7(),
        tenant_id=tenant,
        aggregate_type="order",
        aggregate_id=order.id,
        aggregate_version=order.version,
        type=event_type,
        payload=order.to_dict(),
        created_at=now,
    )
    return to_cloudevent(event)


def sample_batch(n: int, **kwargs: Any) -> list[dict[str, Any]]:
    """``n`` events of ``n`` different orders (the relay never puts two of one order)."""
    return [sample_cloudevent(**kwargs) for _ in range(n)]


def assert_sdk_event_is(parsed: Any, event: dict[str, Any]) -> None:
    """What the CloudEvents SDK parsed is the event as sent, attribute by attribute."""
    assert parsed.get_specversion() == "1.0"
    assert parsed.get_id() == event["id"]
    assert parsed.get_type() == event["type"]
    assert parsed.get_source() == event["source"]
    assert parsed.get_subject() == event["subject"]
    assert parsed.get_extension("tenantid") == event["tenantid"]
    assert parsed.get_datacontenttype() == "application/json"
    assert parsed.get_time() == dt.datetime.fromisoformat(event["time"])
    assert parsed.get_data() == event["data"]
