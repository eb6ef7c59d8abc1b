"""docs/guide/extending.md, "Shape the events" and "Publish events of your own aggregates":
the example project puts a correlation id on every event, and records a host event of its
own — a customer's new credit limit — in the transaction of its own idempotent endpoint;
the relay publishes it beside the order events, with the same guarantees."""

from __future__ import annotations

from typing import Any

import pytest
from shop.models import Customer

from django_orders.models import IdempotencyKey, OutboxEvent
from django_orders.outbox.relay import Relay
from tests.orders_api import OrdersClient, assert_problem
from tests.relay_publishers import RecordingPublisher

pytestmark = pytest.mark.django_db

CHANGED = "com.example.customer.credit_limit_changed"


def set_limit(api: OrdersClient, customer: int, body: Any, key: str) -> Any:
    return api.call(
        "PUT",
        f"/customers/{customer}/credit-limit",
        body,
        headers={"Idempotency-Key": key, "X-Correlation-Id": f"corr-{key}"},
    )


def test_every_event_of_a_request_carries_its_correlation_id(
    api: OrdersClient, customer: Customer
) -> None:
    created = api.create({"customerId": customer.pk}, headers={"X-Correlation-Id": "req-7"})
    assert created.status_code == 201, created.content
    assert created["X-Correlation-Id"] == "req-7"
    anonymous = api.create({"customerId": customer.pk})  # none sent: one is made
    assert anonymous["X-Correlation-Id"]

    publisher = RecordingPublisher()
    assert Relay(publisher, listen=False).run(once=True) is True
    assert [e["correlationid"] for e in publisher.events] == [
        "req-7",
        anonymous["X-Correlation-Id"],
    ]


def test_a_credit_limit_change_records_its_event_in_the_same_transaction(
    api: OrdersClient, customer: Customer
) -> None:
    response = set_limit(api, customer.pk, {"creditLimitCents": 5_000}, "limit-1")
    assert response.status_code == 200, response.content
    assert response.json() == {"customerId": customer.pk, "creditLimitCents": 5_000}
    (event,) = OutboxEvent.objects.filter(type=CHANGED)
    assert (event.aggregate_type, event.aggregate_id, event.aggregate_version) == (
        "customer",
        str(customer.pk),
        1,
    )
    assert event.payload == {
        "customerId": customer.pk,
        "creditLimitCents": 5_000,
        "previousCreditLimitCents": 1_000,
    }
    assert event.extensions == {"correlationid": "corr-limit-1"}

    # A retry with the same key is the stored answer: no second change, no second event.
    replay = set_limit(api, customer.pk, {"creditLimitCents": 5_000}, "limit-1")
    assert replay["Idempotent-Replayed"] == "true"
    assert OutboxEvent.objects.filter(type=CHANGED).count() == 1
    # The next change is the aggregate's version 2.
    assert set_limit(api, customer.pk, {"creditLimitCents": 7_000}, "limit-2").status_code == 200
    versions = OutboxEvent.objects.filter(type=CHANGED).order_by("aggregate_version")
    assert [e.payload["creditLimitCents"] for e in versions] == [5_000, 7_000]


@pytest.mark.parametrize(
    ("customer_id", "body", "status", "code"),
    [
        (None, {"creditLimitCents": -1}, 400, "validation_error"),
        (None, {"creditLimitCents": "5000"}, 400, "validation_error"),
        (None, {"creditLimitCents": 5, "extra": 1}, 400, "validation_error"),
        (999_999, {"creditLimitCents": 5}, 404, "not_found"),
    ],
)
def test_a_refused_change_writes_nothing(
    api: OrdersClient,
    customer: Customer,
    customer_id: int | None,
    body: Any,
    status: int,
    code: str,
) -> None:
    response = set_limit(api, customer_id or customer.pk, body, "bad-1")
    assert_problem(response, status, code)
    assert not OutboxEvent.objects.filter(type=CHANGED).exists()
    assert not IdempotencyKey.objects.filter(key="bad-1").exists()
    customer.refresh_from_db()
    assert customer.credit_limit_cents == 1_000


def test_another_tenants_customer_is_not_found(customer: Customer) -> None:
    other = OrdersClient(tenant="shop-2")
    response = set_limit(other, customer.pk, {"creditLimitCents": 5}, "other-1")
    assert_problem(response, 404, "not_found")


def test_the_relay_publishes_host_events_beside_order_events(
    api: OrdersClient, customer: Customer
) -> None:
    created = api.create({"customerId": customer.pk}).json()
    set_limit(api, customer.pk, {"creditLimitCents": 2_000}, "limit-a")
    api.confirm(created["id"], {"totalCents": 1_500})  # allowed by the new limit
    set_limit(api, customer.pk, {"creditLimitCents": 3_000}, "limit-b")

    publisher = RecordingPublisher()
    assert Relay(publisher, listen=False).run(once=True) is True
    types = [e["type"] for e in publisher.events]
    assert sorted(types) == sorted(["order.created", "order.confirmed", CHANGED, CHANGED])
    limits = [e["data"]["creditLimitCents"] for e in publisher.events if e["type"] == CHANGED]
    assert limits == [2_000, 3_000]
    assert {e["subject"] for e in publisher.events if e["type"] == CHANGED} == {str(customer.pk)}
