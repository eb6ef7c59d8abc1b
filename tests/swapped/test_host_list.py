"""docs/guide/extending.md, "Filtering the list on a host field": ``GET /orders?channel=…``
filters on the example project's ``channel`` column; the value is part of the cursor's
scope, like ``status``; and with the host's index ``(tenant_id, channel, created_at, id)``
a deep page is still one backward index range scan (EXPLAIN, PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory
from shop.models import Order
from shop.serializers import ShopOrderFilterSerializer

from django_orders import services
from django_orders.pagination import KeysetPagination
from tests.explain_helpers import assert_keyset_index_scan, blocks, explain, list_page_sql
from tests.orders_api import OrdersClient, assert_problem

pytestmark = pytest.mark.django_db

CHANNELS = ("web", "phone", "store")


@pytest.fixture
def orders() -> dict[str, list[str]]:
    """Seven orders of shop-1 over the three channels (one confirmed), one of shop-2.
    Ids by channel, newest first."""
    by_channel: dict[str, list[str]] = {channel: [] for channel in CHANNELS}
    for i in range(7):
        channel = CHANNELS[i % 3]
        order = services.create_order("shop-1", channel=channel)
        by_channel[channel].insert(0, str(order.id))
    services.create_order("shop-2", channel="phone")
    return by_channel


def ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.content
    return [item["id"] for item in response.json()["items"]]


def test_the_list_filters_on_the_host_field(
    api: OrdersClient, orders: dict[str, list[str]]
) -> None:
    for channel in CHANNELS:
        assert ids(api.call("GET", f"/orders?channel={channel}")) == orders[channel]


def test_a_filtered_walk_sees_each_order_once(
    api: OrdersClient, orders: dict[str, list[str]]
) -> None:
    seen: list[str] = []
    path = "/orders?channel=web&limit=2"
    while path:
        response = api.call("GET", path)
        seen += ids(response)
        cursor = response.json()["nextCursor"]
        path = f"/orders?channel=web&limit=2&cursor={cursor}" if cursor else ""
    assert seen == orders["web"]


def test_the_host_filter_is_part_of_the_cursor_scope(
    api: OrdersClient, orders: dict[str, list[str]]
) -> None:
    cursor = api.call("GET", "/orders?channel=web&limit=1").json()["nextCursor"]
    for query in ("channel=phone", "", "channel=web&status=draft"):
        response = api.call("GET", f"/orders?{query}&cursor={cursor}")
        problem = assert_problem(response, 400, "invalid_cursor")
        assert problem["detail"] == "The cursor was issued for another tenant or filter."
    assert ids(api.call("GET", f"/orders?channel=web&cursor={cursor}")) == orders["web"][1:]


def test_host_and_package_filters_combine(api: OrdersClient, orders: dict[str, list[str]]) -> None:
    target = orders["phone"][0]
    assert api.confirm(target, {"totalCents": 1}).status_code == 200
    assert ids(api.call("GET", "/orders?channel=phone&status=confirmed")) == [target]
    assert ids(api.call("GET", "/orders?channel=web&status=confirmed")) == []


@pytest.mark.parametrize("value", ["fax", "", "WEB"])
def test_an_invalid_host_filter_is_400_invalid_filter(api: OrdersClient, value: str) -> None:
    problem = assert_problem(api.call("GET", f"/orders?channel={value}"), 400, "invalid_filter")
    assert problem["detail"] == "channel must be one of: web, phone, store."
    assert problem["errors"] == {"channel": ["channel must be one of: web, phone, store."]}


def test_a_filtered_page_is_one_query(api: OrdersClient, orders: dict[str, list[str]]) -> None:
    with CaptureQueriesContext(connection) as captured:
        assert ids(api.call("GET", "/orders?channel=store&status=draft")) == orders["store"]
    assert len(captured.captured_queries) == 1


# -- EXPLAIN ---------------------------------------------------------------------------

TENANT = "shop-big"
ROWS = 60_000


@pytest.fixture
def seeded() -> None:
    """60,000 orders of one tenant over the three channels, 30,000 of others; ANALYZE."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO shop_order
                (id, tenant_id, status, version, total_cents, currency, metadata,
                 created_at, updated_at, channel, customer_id)
            SELECT gen_random_uuid(),
                   CASE WHEN i <= %s THEN %s ELSE 'shop-' || (i %% 10) END,
                   'draft', 1, NULL, 'USD', '{}'::jsonb,
                   timestamptz '2026-01-01 00:00:00+00'
                       + (i / 2) * interval '1 millisecond' + (i %% 5) * interval '1 microsecond',
                   now(),
                   (ARRAY['web', 'phone', 'store'])[1 + i %% 3],
                   NULL
            FROM generate_series(1, %s) AS i
            """,
            [ROWS, TENANT, ROWS + 30_000],
        )
        cursor.execute("ANALYZE shop_order")


def cursor_at(depth: int, channel: str) -> str:
    """The cursor a walk of ``?channel=`` holds after ``depth`` rows."""
    queryset = Order.objects.filter(tenant_id=TENANT, channel=channel)
    row = queryset.order_by("-created_at", "-id")[depth - 1]
    django_request = APIRequestFactory().get("/orders", {"channel": channel})
    django_request.tenant_id = TENANT  # type: ignore[attr-defined]
    paginator = KeysetPagination(filter_query_params=tuple(ShopOrderFilterSerializer().fields))
    return paginator.encode_cursor(Request(django_request), queryset, row)


@pytest.mark.postgres
@pytest.mark.usefixtures("seeded")
def test_a_deep_page_of_a_host_filter_reads_the_hosts_index_backwards() -> None:
    depth = 15_000
    first_sql, _ = list_page_sql(TENANT, {"limit": 20, "channel": "phone"})
    params = {"limit": 20, "channel": "phone", "cursor": cursor_at(depth, "phone")}
    deep_sql, deep_ids = list_page_sql(TENANT, params)

    text, plan = explain(deep_sql)
    print(text)
    assert_keyset_index_scan(text, plan, "shop_order_channel_keyset")
    assert "(channel)::text = 'phone'::text" in plan["Plans"][0]["Index Cond"]

    walk = Order.objects.filter(tenant_id=TENANT, channel="phone").order_by("-created_at", "-id")
    assert deep_ids == [str(pk) for pk in walk.values_list("id", flat=True)[depth : depth + 20]]
    _, first_plan = explain(first_sql)
    assert blocks(plan) <= blocks(first_plan) + 5, (blocks(plan), blocks(first_plan))
