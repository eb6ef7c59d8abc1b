"""An outbox event on the wire is a CloudEvents 1.0 structured JSON document
(docs/guide/publishers.md)."""

from __future__ import annotations

import json
import re

import pytest
from django.test import override_settings

from django_orders import services
from django_orders.cloudevents import CONTENT_TYPE, serialize, to_cloudevent
from django_orders.models import OutboxEvent

pytestmark = pytest.mark.django_db

# CloudEvents 1.0 §3.1.1: attribute names are lowercase ASCII letters or digits, ≤ 20 chars.
ATTRIBUTE_NAME = re.compile(r"^[a-z0-9]{1,20}$")
RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")


def created_event(tenant: str = "shop-1", **kwargs: object) -> OutboxEvent:
    order = services.create_order(tenant, **kwargs)  # type: ignore[arg-type]
    return OutboxEvent.objects.get(aggregate_id=order.id, type="order.created")


def test_required_and_optional_attributes() -> None:
    event = created_event(total_cents=1250, metadata={"ref": "A-1"})
    ce = to_cloudevent(event)

    assert ce["specversion"] == "1.0"
    assert ce["id"] == str(event.id)
    assert ce["source"] == "/django-orders"
    assert ce["type"] == "order.created"
    assert ce["subject"] == str(event.aggregate_id)
    assert ce["datacontenttype"] == "application/json"
    assert ce["tenantid"] == "shop-1"
    assert RFC3339_UTC.match(ce["time"])
    assert ce["data"] == event.payload
    assert ce["data"]["totalCents"] == 1250
    assert ce["data"]["metadata"] == {"ref": "A-1"}
    assert all(ATTRIBUTE_NAME.match(name) for name in ce)


def test_time_is_the_event_creation_instant() -> None:
    event = created_event()
    assert to_cloudevent(event)["time"] == event.payload["updatedAt"]


def test_id_is_stable_across_redeliveries() -> None:
    event = created_event()
    first = to_cloudevent(event)
    event.refresh_from_db()
    event.attempts = 3
    assert to_cloudevent(event)["id"] == first["id"]
    assert serialize(to_cloudevent(event)) == serialize(first)


def test_source_comes_from_the_setting() -> None:
    event = created_event()
    with override_settings(DJANGO_ORDERS={"EVENT_SOURCE": "https://shop.example/orders"}):
        assert to_cloudevent(event)["source"] == "https://shop.example/orders"
    assert to_cloudevent(event)["source"] == "/django-orders"


def test_serialize_is_compact_utf8_json() -> None:
    event = created_event(metadata={"note": "Grüße ✓"})
    body = serialize(to_cloudevent(event))

    assert isinstance(body, bytes)
    assert b", " not in body
    assert b": " not in body
    assert "Grüße ✓".encode() in body
    assert json.loads(body.decode("utf-8")) == to_cloudevent(event)


def test_serialize_never_fails_on_a_lone_surrogate() -> None:
    body = serialize({"id": "x", "data": {"note": "\ud800"}})
    assert json.loads(body) == {"id": "x", "data": {"note": "\ud800"}}


def test_content_type_of_structured_mode() -> None:
    assert CONTENT_TYPE == "application/cloudevents+json"
