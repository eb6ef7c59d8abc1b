"""docs/api/get-order.md: ``GET /orders/{id}`` with ``ETag`` and ``If-None-Match``."""

from __future__ import annotations

import uuid

import pytest
from django.db import transaction
from django.test import override_settings

from django_orders import services
from django_orders.models import Order, OutboxEvent
from tests.orders_api import OrdersClient, assert_problem

pytestmark = pytest.mark.django_db


@pytest.fixture
def order() -> Order:
    return services.create_order("shop-1", total_cents=10, metadata={"a": "b"})


def test_get_answers_200_with_the_order_and_its_etag(api: OrdersClient, order: Order) -> None:
    response = api.get(f"/orders/{order.id}", headers={"X-Tenant-Id": "shop-1"})

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == order.to_dict()
    assert response["ETag"] == '"1"'


def test_the_id_is_case_insensitive_but_only_in_its_canonical_form(
    api: OrdersClient, order: Order
) -> None:
    assert api.call("GET", f"/orders/{str(order.id).upper()}").status_code == 200
    assert api.call("GET", f"/orders/{order.id.hex}").status_code == 404


def test_the_etag_follows_the_version(api: OrdersClient, order: Order) -> None:
    with transaction.atomic():
        services.confirm_order(services.get_order_for_update("shop-1", order.id), total_cents=5)
    response = api.call("GET", f"/orders/{order.id}/")
    assert response["ETag"] == '"2"'
    assert response.json()["version"] == 2
    assert response.json()["status"] == "confirmed"


@pytest.mark.parametrize(
    "header", ['"1"', 'W/"1"', '"7", "1"', 'W/"7", W/"1"', "*", ' "1" ', '"0","1"']
)
def test_a_matching_if_none_match_is_304_without_body(
    api: OrdersClient, order: Order, header: str
) -> None:
    response = api.call("GET", f"/orders/{order.id}", headers={"If-None-Match": header})

    assert response.status_code == 304
    assert response.content == b""
    assert response["ETag"] == '"1"'


@pytest.mark.parametrize("header", ['"2"', 'W/"2"', '"1', "abc", "", '"11"'])
def test_a_non_matching_or_malformed_if_none_match_is_200(
    api: OrdersClient, order: Order, header: str
) -> None:
    response = api.call("GET", f"/orders/{order.id}", headers={"If-None-Match": header})
    assert response.status_code == 200
    assert response.json()["id"] == str(order.id)


@pytest.mark.parametrize(
    "order_id",
    [
        str(uuid.uuid4()),
        "not-a-uuid",
        "1",
        "00000000-0000-0000-0000-00000000000g",
        "%00",
        "x" * 300,
        "01a213ab147c764eb36a8b8ddb000649",
        "{01a213ab-147c-764e-b36a-8b8ddb000649}",
        "urn:uuid:01a213ab-147c-764e-b36a-8b8ddb000649",
    ],
)
def test_unknown_and_malformed_ids_are_404_not_found(api: OrdersClient, order_id: str) -> None:
    assert_problem(api.call("GET", f"/orders/{order_id}"), 404, "not_found")


def test_another_tenants_order_is_404_like_a_missing_one(api: OrdersClient, order: Order) -> None:
    other = OrdersClient(tenant="shop-2")
    foreign = other.call("GET", f"/orders/{order.id}")
    missing = other.call("GET", f"/orders/{uuid.uuid4()}")

    assert_problem(foreign, 404, "not_found")
    assert foreign.content == missing.content
    assert dict(foreign.headers) == dict(missing.headers)


def test_the_tenant_is_required(order: Order) -> None:
    assert_problem(
        OrdersClient(tenant=None).call("GET", f"/orders/{order.id}"), 400, "missing_tenant"
    )


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_other_methods_are_405(api: OrdersClient, order: Order, method: str) -> None:
    response = api.call(method, f"/orders/{order.id}", {})
    assert_problem(response, 405, "method_not_allowed")
    assert "GET" in response["Allow"]


def test_one_version_is_always_the_same_bytes(api: OrdersClient) -> None:
    # A strong ETag (RFC 9110 §8.8.1) promises byte-identical representations. PostgreSQL's
    # jsonb gives metadata keys back in its own order (shorter keys first), so the order
    # is serialized with sorted keys: the 201 and a GET are the same bytes.
    metadata = {"bb": "1", "a": "2", "ccc": "3", "B": "4", "é": "5"}
    created = api.create({"metadata": metadata})
    fetched = api.call("GET", created["Location"])

    assert fetched["ETag"] == created["ETag"] == '"1"'
    assert fetched.content == created.content
    assert list(fetched.json()["metadata"]) == ["B", "a", "bb", "ccc", "é"]
    assert OutboxEvent.objects.get().payload == fetched.json()


@override_settings(REST_FRAMEWORK={"COMPACT_JSON": False, "UNICODE_JSON": False})
def test_the_bytes_do_not_depend_on_accept_or_the_hosts_json_settings(api: OrdersClient) -> None:
    # DRF's JSONRenderer indents for "Accept: application/json; indent=4" (and takes its
    # spacing from the host's COMPACT_JSON / UNICODE_JSON, read when DRF is imported).
    created = api.create({"metadata": {"note": "café"}}, key="bytes")
    indented = {"Accept": "application/json; indent=4"}
    replay = api.create({"metadata": {"note": "café"}}, key="bytes", headers=indented)
    fetched = api.call("GET", created["Location"], headers=indented)

    assert b"\n" not in created.content
    assert b'"note":"caf\xc3\xa9"' in created.content
    assert replay.content == fetched.content == created.content
    missing = api.call("GET", f"/orders/{uuid.uuid4()}", headers=indented)
    assert b"\n" not in missing.content


@pytest.mark.django_db
@pytest.mark.parametrize("accept", ["application/problem+json", "text/html", "image/png"])
def test_an_accept_the_api_cannot_satisfy_is_disregarded_not_406(accept: str) -> None:
    """RFC 9110 §12.5.1: the server may disregard Accept and send its one representation."""
    from django.test import Client

    from django_orders.services import create_order

    order = create_order("shop-1")
    client = Client(headers={"X-Tenant-Id": "shop-1", "Accept": accept})
    found = client.get(f"/orders/{order.id}")
    assert found.status_code == 200
    assert found["Content-Type"] == "application/json"
    assert found.json()["id"] == str(order.id)
    missing = client.get("/orders/01a213bb-a255-759a-98dd-9524e290f4a3")
    assert missing.status_code == 404
    assert missing["Content-Type"] == "application/problem+json"
    assert missing.json()["code"] == "not_found"
