"""docs/guide/extending.md, "Host rules": the example project's credit-limit rule refuses,
inside the transaction, an order whose total exceeds its customer's credit limit — with its
own 422 problem, and nothing written: no order change, no event, no stored key, so a retry
with the same ``Idempotency-Key`` runs the rule again."""

from __future__ import annotations

import pytest
from shop.models import Customer, Order

from django_orders.models import IdempotencyKey, OutboxEvent
from tests.orders_api import OrdersClient, assert_problem

pytestmark = pytest.mark.django_db


def assert_refused(response: object, customer: Customer) -> None:
    problem = assert_problem(response, 422, "credit_limit_exceeded")
    assert problem["creditLimitCents"] == customer.credit_limit_cents
    assert f"customer {customer.pk}" in problem["detail"]
    assert "Idempotent-Replayed" not in response  # type: ignore[operator]


def test_a_confirm_above_the_credit_limit_is_refused_and_writes_nothing(
    api: OrdersClient, customer: Customer
) -> None:
    created = api.create({"customerId": customer.pk}).json()
    key = {"Idempotency-Key": "confirm-1"}

    assert_refused(api.confirm(created["id"], {"totalCents": 1_001}, headers=key), customer)
    assert api.call("GET", f"/orders/{created['id']}").json() == created  # unchanged
    assert OutboxEvent.objects.filter(aggregate_id=created["id"]).count() == 1  # created only
    assert not IdempotencyKey.objects.filter(key="confirm-1").exists()

    # The same request again runs the rule again (nothing was stored to replay) ...
    assert_refused(api.confirm(created["id"], {"totalCents": 1_001}, headers=key), customer)
    # ... and once the limit allows it, the very same request succeeds.
    Customer.objects.filter(pk=customer.pk).update(credit_limit_cents=2_000)
    confirmed = api.confirm(created["id"], {"totalCents": 1_001}, headers=key)
    assert confirmed.status_code == 200, confirmed.content
    assert "Idempotent-Replayed" not in confirmed
    replay = api.confirm(created["id"], {"totalCents": 1_001}, headers=key)
    assert (replay["Idempotent-Replayed"], replay.content) == ("true", confirmed.content)


def test_a_create_above_the_credit_limit_leaves_no_order_no_event_no_key(
    api: OrdersClient, customer: Customer
) -> None:
    body = {"customerId": customer.pk, "totalCents": 5_000}
    assert_refused(api.create(body, key="create-1"), customer)
    assert (Order.objects.count(), OutboxEvent.objects.count()) == (0, 0)
    assert not IdempotencyKey.objects.exists()

    assert_refused(api.create(body, key="create-1"), customer)
    Customer.objects.filter(pk=customer.pk).update(credit_limit_cents=5_000)
    created = api.create(body, key="create-1")
    assert created.status_code == 201, created.content
    assert Order.objects.count() == 1


def test_the_rule_sees_a_customer_given_on_confirm(api: OrdersClient, customer: Customer) -> None:
    order_id = api.create({}).json()["id"]  # an anonymous draft: nothing to check yet
    assert_refused(
        api.confirm(order_id, {"totalCents": 1_500, "customerId": customer.pk}), customer
    )
    assert Order.objects.get(pk=order_id).customer_id is None
    assert api.confirm(order_id, {"totalCents": 900, "customerId": customer.pk}).status_code == 200


def test_within_the_limit_and_without_a_customer_nothing_is_refused(
    api: OrdersClient, customer: Customer
) -> None:
    assert api.create({"customerId": customer.pk, "totalCents": 1_000}).status_code == 201
    assert api.create({"totalCents": 10**9}).status_code == 201
    order_id = api.create({"customerId": customer.pk}).json()["id"]
    assert api.confirm(order_id, {"totalCents": 1_000}).status_code == 200
    assert api.close_order(order_id).status_code == 200
