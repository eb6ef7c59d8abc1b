"""docs/guide/extending.md, "Host fields": the example project's ``shop.Order`` gives orders
a customer (a foreign key) and a channel (a choice), stored in real columns, accepted and
validated on create (the customer on confirm too), and part of every guarantee: the order
JSON, its events, the idempotency fingerprint and one version = the same bytes."""

from __future__ import annotations

import pytest
from django.db import connection
from shop.models import Customer, Order

from django_orders import services
from django_orders.cloudevents import to_cloudevent
from django_orders.models import IdempotencyKey, OutboxEvent, get_order_model
from tests.orders_api import OrdersClient, assert_problem

pytestmark = pytest.mark.django_db


def test_the_order_model_in_force_is_the_hosts() -> None:
    assert get_order_model() is Order
    assert Order._meta.db_table == "shop_order"
    columns = {
        column.name
        for column in connection.introspection.get_table_description(
            connection.cursor(), "shop_order"
        )
    }
    assert {"customer_id", "channel"} <= columns


def test_a_host_field_survives_create_replay_get_confirm_list_and_events(
    api: OrdersClient, customer: Customer
) -> None:
    body = {"currency": "EUR", "customerId": customer.pk, "channel": "phone"}
    created = api.create(body, key="host-1")
    assert created.status_code == 201, created.content
    document = created.json()
    assert (document["customerId"], document["channel"]) == (customer.pk, "phone")
    order = Order.objects.get(pk=document["id"])
    assert (order.customer_id, order.channel) == (customer.pk, "phone")

    replay = api.create(body, key="host-1")
    assert replay["Idempotent-Replayed"] == "true"
    assert replay.content == created.content

    read = api.call("GET", f"/orders/{order.pk}")
    assert read["ETag"] == created["ETag"] == '"1"'
    assert read.content == created.content

    confirmed = api.confirm(str(order.pk), {"totalCents": 500})
    assert confirmed.status_code == 200, confirmed.content
    assert (confirmed.json()["customerId"], confirmed.json()["channel"]) == (customer.pk, "phone")
    assert api.call("GET", f"/orders/{order.pk}").content == confirmed.content

    listed = api.call("GET", "/orders")
    assert listed.json()["items"] == [confirmed.json()]
    assert confirmed.content in listed.content  # the same bytes inside the page

    events = OutboxEvent.objects.filter(aggregate_id=order.pk).order_by("aggregate_version")
    assert [event.payload for event in events] == [created.json(), confirmed.json()]
    assert [to_cloudevent(event)["data"]["customerId"] for event in events] == [customer.pk] * 2


def test_the_fingerprint_covers_the_host_fields(api: OrdersClient, customer: Customer) -> None:
    other = Customer.objects.create(tenant_id="shop-1", name="Other Co", credit_limit_cents=1)
    assert api.create({"customerId": customer.pk}, key="fp").status_code == 201
    for body in ({"customerId": other.pk}, {"customerId": customer.pk, "channel": "store"}):
        assert_problem(api.create(body, key="fp"), 422, "idempotency_key_reused")
    assert Order.objects.count() == 1


@pytest.mark.parametrize(
    ("body", "member"),
    [
        ({"customerId": "1"}, "customerId"),  # strict: a string is not an id
        ({"customerId": True}, "customerId"),
        ({"customerId": 10**9}, "customerId"),  # no such customer
        ({"channel": "fax"}, "channel"),
        ({"channel": 1}, "channel"),
    ],
)
def test_host_fields_are_validated_on_create(
    api: OrdersClient, body: dict[str, object], member: str
) -> None:
    problem = assert_problem(api.create(body), 400, "validation_error")
    assert list(problem["errors"]) == [member]
    assert Order.objects.count() == 0
    assert OutboxEvent.objects.count() == 0
    assert IdempotencyKey.objects.count() == 0


def test_another_tenants_customer_does_not_exist_for_this_tenant(api: OrdersClient) -> None:
    foreign = Customer.objects.create(tenant_id="shop-2", name="Theirs", credit_limit_cents=1)
    problem = assert_problem(api.create({"customerId": foreign.pk}), 400, "validation_error")
    assert "does not exist" in problem["errors"]["customerId"][0]


def test_the_package_members_are_still_validated_by_the_host_serializer(
    api: OrdersClient,
) -> None:
    problem = assert_problem(api.create({"currency": "eur"}), 400, "validation_error")
    assert list(problem["errors"]) == ["currency"]
    problem = assert_problem(api.create({"status": "closed"}), 400, "validation_error")
    assert problem["errors"] == {"status": ["This field is read-only."]}


def test_a_plain_body_goes_through_the_host_serializer_and_gets_the_defaults(
    api: OrdersClient,
) -> None:
    response = api.create({"totalCents": 5})
    assert response.status_code == 201
    assert (response.json()["customerId"], response.json()["channel"]) == (None, "web")


def test_the_customer_may_be_given_on_confirm(api: OrdersClient, customer: Customer) -> None:
    order_id = api.create({}).json()["id"]
    confirmed = api.confirm(order_id, {"totalCents": 100, "customerId": customer.pk})
    assert confirmed.status_code == 200, confirmed.content
    assert confirmed.json()["customerId"] == customer.pk
    assert Order.objects.get(pk=order_id).customer_id == customer.pk
    event = OutboxEvent.objects.get(aggregate_id=order_id, aggregate_version=2)
    assert event.payload == confirmed.json()
    # The channel is not taken on confirm: this host did not say so.
    other = api.create({}).json()["id"]
    problem = assert_problem(
        api.confirm(other, {"totalCents": 1, "channel": "phone"}), 400, "validation_error"
    )
    assert problem["errors"] == {"channel": ["Unknown field."]}


def test_the_service_layer_takes_host_fields_as_keywords(customer: Customer) -> None:
    order = services.create_order("shop-1", customer=customer, channel="store")
    stored = Order.objects.get(pk=order.pk)
    assert (stored.customer_id, stored.channel) == (customer.pk, "store")
    assert stored.to_dict() == order.to_dict()


@pytest.mark.parametrize("name", ["status", "version", "created_at", "id", "confirmed_at"])
def test_the_service_layer_refuses_the_packages_own_fields_as_host_fields(name: str) -> None:
    with pytest.raises(TypeError, match="set by django-orders"):
        services.create_order("shop-1", **{name: "x"})
    assert Order.objects.count() == 0


def test_the_service_layer_refuses_what_is_not_a_column() -> None:
    with pytest.raises(TypeError, match="no field 'colour'"):
        services.create_order("shop-1", colour="red")


def test_the_packages_own_table_stays_empty(api: OrdersClient) -> None:
    """Migration 0001 created django_orders_order before the model was swappable; the
    swapped model's orders are in shop_order."""
    api.create({})
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM django_orders_order")
        assert cursor.fetchone() == (0,)
        cursor.execute("SELECT COUNT(*) FROM shop_order")
        assert cursor.fetchone() == (1,)
