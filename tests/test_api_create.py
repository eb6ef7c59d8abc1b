"""docs/api/create-order.md: ``POST /orders`` creates a draft order."""

from __future__ import annotations

import re
import uuid

import pytest
from django.test import override_settings
from django.urls import reverse

from django_orders.models import IdempotencyKey, Order, OutboxEvent
from tests.orders_api import OrdersClient, assert_problem

pytestmark = pytest.mark.django_db

RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def test_create_answers_201_with_location_etag_and_the_order(api: OrdersClient) -> None:
    response = api.create({"totalCents": 1250, "currency": "EUR", "metadata": {"ref": "A-1"}})

    assert response.status_code == 201
    assert response["Content-Type"] == "application/json"
    body = response.json()
    order = Order.objects.get()
    assert body == order.to_dict()
    assert uuid.UUID(body["id"]).version == 7
    assert body["tenantId"] == "shop-1"
    assert body["status"] == "draft"
    assert body["version"] == 1
    assert body["totalCents"] == 1250
    assert body["currency"] == "EUR"
    assert body["metadata"] == {"ref": "A-1"}
    assert RFC3339_UTC.match(body["createdAt"])
    assert body["updatedAt"] == body["createdAt"]
    assert body["confirmedAt"] is None
    assert body["closedAt"] is None
    assert response["ETag"] == '"1"'
    assert response["Location"] == f"http://testserver/orders/{order.id}"
    assert "Idempotent-Replayed" not in response


@pytest.mark.parametrize(
    ("raw", "content_type"), [("", "application/json"), ("{}", "application/json"), ("", "")]
)
def test_an_empty_body_and_an_empty_object_both_create_a_default_draft(
    api: OrdersClient, raw: str, content_type: str
) -> None:
    response = api.create(raw=raw, content_type=content_type)

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["totalCents"] is None
    assert body["currency"] == "USD"
    assert body["metadata"] == {}


@override_settings(DJANGO_ORDERS={"DEFAULT_CURRENCY": "CHF"})
def test_the_default_currency_comes_from_settings(api: OrdersClient) -> None:
    assert api.create({}).json()["currency"] == "CHF"


def test_create_writes_the_order_created_event_in_the_same_transaction(api: OrdersClient) -> None:
    body = api.create({"totalCents": 5}).json()

    event = OutboxEvent.objects.get()
    assert event.type == "order.created"
    assert str(event.aggregate_id) == body["id"]
    assert event.aggregate_version == 1
    assert event.tenant_id == "shop-1"
    assert event.payload == body


def test_the_location_is_the_order_which_get_returns(api: OrdersClient) -> None:
    created = api.create({})
    fetched = api.get(created["Location"], headers={"X-Tenant-Id": "shop-1"})

    assert fetched.status_code == 200
    assert fetched.json() == created.json()


def test_the_trailing_slash_is_optional(api: OrdersClient) -> None:
    response = api.call("POST", "/orders/", {}, headers={"Idempotency-Key": "slash"})
    assert response.status_code == 201


# -- validation (docs/api/README.md) -------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"totalCents": -1}, "totalCents"),
        ({"totalCents": 2**63}, "totalCents"),
        ({"totalCents": 10**30}, "totalCents"),
        ({"totalCents": "12"}, "totalCents"),
        ({"totalCents": 12.5}, "totalCents"),
        ({"totalCents": 12.0}, "totalCents"),
        ({"totalCents": True}, "totalCents"),
        ({"currency": "usd"}, "currency"),
        ({"currency": "US"}, "currency"),
        ({"currency": "USDX"}, "currency"),
        ({"currency": "US1"}, "currency"),
        ({"currency": "USD\n"}, "currency"),
        ({"currency": 840}, "currency"),
        ({"currency": None}, "currency"),
        ({"metadata": []}, "metadata"),
        ({"metadata": None}, "metadata"),
        ({"metadata": {"a": 1}}, "metadata"),
        ({"metadata": {"a": None}}, "metadata"),
        ({"metadata": {"a": {"b": "c"}}}, "metadata"),
        ({"metadata": {"": "empty key"}}, "metadata"),
        ({"metadata": {"k" * 41: "v"}}, "metadata"),
        ({"metadata": {"k": "v" * 501}}, "metadata"),
        ({"metadata": {f"k{i}": "v" for i in range(51)}}, "metadata"),
        ({"unknown": 1}, "unknown"),
        ({"id": str(uuid.uuid4())}, "id"),
        ({"status": "confirmed"}, "status"),
        ({"version": 7}, "version"),
        ({"tenantId": "shop-2"}, "tenantId"),
        ({"createdAt": "2020-01-01T00:00:00Z"}, "createdAt"),
    ],
)
def test_invalid_bodies_are_400_validation_error_naming_the_field(
    api: OrdersClient, body: dict, field: str
) -> None:
    response = api.create(body)

    problem = assert_problem(response, 400, "validation_error")
    assert list(problem["errors"]) == [field]
    assert all(isinstance(message, str) for message in _messages(problem["errors"][field]))
    assert not Order.objects.exists()
    assert not IdempotencyKey.objects.exists()


def _messages(errors: object) -> list[object]:
    if isinstance(errors, dict):
        return [m for value in errors.values() for m in _messages(value)]
    assert isinstance(errors, list)
    return list(errors)


def test_the_limits_themselves_are_accepted(api: OrdersClient) -> None:
    metadata = {f"{i:02d}" + "k" * 38: "v" * 500 for i in range(50)}
    response = api.create({"totalCents": 2**63 - 1, "metadata": metadata})

    assert response.status_code == 201, response.content
    assert response.json()["totalCents"] == 2**63 - 1
    assert Order.objects.get().metadata == metadata


def test_read_only_and_unknown_fields_are_each_reported(api: OrdersClient) -> None:
    problem = assert_problem(
        api.create({"id": "x", "colour": "red", "currency": "usd"}), 400, "validation_error"
    )
    assert problem["errors"]["id"] == ["This field is read-only."]
    assert problem["errors"]["colour"] == ["Unknown field."]


@pytest.mark.parametrize("raw", ["[]", "[{}]", '"text"', "42", "null", "true"])
def test_a_body_that_is_not_an_object_is_400_validation_error(api: OrdersClient, raw: str) -> None:
    problem = assert_problem(api.create(raw=raw), 400, "validation_error")
    assert "non_field_errors" in problem["errors"]


@pytest.mark.parametrize(
    "raw",
    [
        "{",
        '{"totalCents": }',
        '{"metadata": {"a": "\\u0000"}}',
        '{"metadata": {"a": "\\ud800"}}',
        '{"metadata": {"\\u0000": "a"}}',
        "[" * 10_000 + "]" * 10_000,
        '{"totalCents": ' + "9" * 5000 + "}",
        '{"totalCents": NaN}',
    ],
)
def test_malformed_json_is_400_invalid_json(api: OrdersClient, raw: str) -> None:
    assert_problem(api.create(raw=raw), 400, "invalid_json")
    assert not Order.objects.exists()


def test_a_body_that_is_not_json_is_415(api: OrdersClient) -> None:
    response = api.create(raw="totalCents=5", content_type="application/x-www-form-urlencoded")
    assert_problem(response, 415, "unsupported_media_type")


@override_settings(DJANGO_ORDERS={"MAX_BODY_BYTES": 100})
def test_a_body_over_max_body_bytes_is_413(api: OrdersClient) -> None:
    response = api.create({"metadata": {"k": "v" * 200}})
    assert_problem(response, 413, "payload_too_large")


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
def test_other_methods_are_405_method_not_allowed(api: OrdersClient, method: str) -> None:
    response = api.call(method, "/orders", {}, headers={"Idempotency-Key": "k"})
    assert_problem(response, 405, "method_not_allowed")
    assert "POST" in response["Allow"]


def test_tenant_errors_come_before_anything_else() -> None:
    anonymous = OrdersClient(tenant=None)
    assert_problem(anonymous.call("POST", "/orders", raw="{"), 400, "missing_tenant")
    bad = OrdersClient(tenant="bad tenant!")
    assert_problem(bad.call("POST", "/orders", raw="{"), 400, "invalid_tenant")


def test_each_location_is_what_reverse_gives_for_its_order(api: OrdersClient) -> None:
    # The route's path is reversed once and the id replaced (docs/benchmarks.md,
    # Finding 14): every order gets its own, under whatever the URLs are at the time.
    for urlconf, path in ((None, "/orders"), ("tests.urls_prefixed", "/api/v1/orders")):
        with override_settings(**({"ROOT_URLCONF": urlconf} if urlconf else {})):
            for key in ("a", "b"):
                created = api.call("POST", path, {}, headers={"Idempotency-Key": f"{path}{key}"})
                order_id = created.json()["id"]
                expected = reverse("django_orders:order-detail", kwargs={"order_id": order_id})
                assert created["Location"] == f"http://testserver{expected}"
                assert expected.startswith(path)
