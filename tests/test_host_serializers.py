"""docs/guide/extending.md: the host's serializers (``CREATE_SERIALIZER``,
``CONFIRM_SERIALIZER``, ``LIST_FILTER_SERIALIZER``, or the views' attributes) validate the
API's input in place of the package's, with the package's own model too."""

from __future__ import annotations

import pytest
from django.test import override_settings
from rest_framework.test import APIRequestFactory

from django_orders import services
from django_orders.models import Order
from django_orders.views import OrderCollectionView
from tests.hooks import ReferencedCreateSerializer
from tests.orders_api import OrdersClient, assert_problem
from tests.test_query_counts import counted

pytestmark = pytest.mark.django_db

HOOKS = "tests.hooks"


@pytest.fixture
def api() -> OrdersClient:
    return OrdersClient()


@override_settings(DJANGO_ORDERS={"CREATE_SERIALIZER": f"{HOOKS}.ReferencedCreateSerializer"})
def test_a_host_create_serializer_sees_even_a_plainly_valid_body(api: OrdersClient) -> None:
    """``plainly_valid_create`` would accept ``{"totalCents": 5}``: with a host serializer
    in force the body goes through the host's serializer instead."""
    problem = assert_problem(api.create({"totalCents": 5}), 400, "validation_error")
    assert problem["errors"] == {"metadata": ["A ref is required."]}
    assert api.create({"totalCents": 5, "metadata": {"ref": "A-1"}}).status_code == 201
    assert Order.objects.count() == 1


@override_settings(DJANGO_ORDERS={"CREATE_SERIALIZER": f"{HOOKS}.ReferencedCreateSerializer"})
def test_a_host_serializer_keeps_the_create_budget(api: OrdersClient) -> None:
    with counted() as statements:
        assert api.create({"metadata": {"ref": "A-1"}}).status_code == 201
    assert len(statements) <= 4, statements


def test_a_view_attribute_wins_over_the_setting() -> None:
    view = OrderCollectionView.as_view(create_serializer_class=ReferencedCreateSerializer)
    request = APIRequestFactory().post(
        "/orders",
        {"totalCents": 5},
        format="json",
        HTTP_X_TENANT_ID="shop-1",
        HTTP_IDEMPOTENCY_KEY="view-attr",
    )
    request.tenant_id = "shop-1"  # type: ignore[attr-defined]
    response = view(request)
    assert response.status_code == 400
    assert response.data["errors"] == {"metadata": ["A ref is required."]}


@override_settings(DJANGO_ORDERS={"CONFIRM_SERIALIZER": f"{HOOKS}.MinimumConfirmSerializer"})
def test_a_host_confirm_serializer(api: OrdersClient) -> None:
    order = services.create_order("shop-1")
    problem = assert_problem(
        api.confirm(str(order.id), {"totalCents": 99}), 400, "validation_error"
    )
    assert problem["errors"] == {"totalCents": ["At least 100."]}
    assert api.confirm(str(order.id), {"totalCents": 100}).status_code == 200


@override_settings(DJANGO_ORDERS={"LIST_FILTER_SERIALIZER": f"{HOOKS}.CurrencyFilterSerializer"})
def test_a_host_list_filter_filters_and_scopes_the_cursor(api: OrdersClient) -> None:
    eur = [services.create_order("shop-1", currency="EUR") for _ in range(3)]
    services.create_order("shop-1", currency="USD")
    first = api.call("GET", "/orders?currency=EUR&limit=2").json()
    assert [item["id"] for item in first["items"]] == [str(o.id) for o in eur[::-1][:2]]
    cursor = first["nextCursor"]
    rest = api.call("GET", f"/orders?currency=EUR&limit=2&cursor={cursor}").json()
    assert [item["id"] for item in rest["items"]] == [str(eur[0].id)]
    assert_problem(api.call("GET", f"/orders?currency=USD&cursor={cursor}"), 400, "invalid_cursor")
    problem = assert_problem(api.call("GET", "/orders?currency=eur"), 400, "invalid_filter")
    assert list(problem["errors"]) == ["currency"]
    # The package's own filter is still there, its message unchanged.
    problem = assert_problem(api.call("GET", "/orders?status=open"), 400, "invalid_filter")
    assert problem["detail"] == "status must be one of: draft, confirmed, closed."
