"""The cost of a list page does not grow with its depth (docs/api/list-orders.md), proven by
EXPLAIN.

On a tenant holding 60,000 orders (and other tenants around it), the exact statement a
deep ``GET /orders`` page sends is explained: PostgreSQL must read the keyset index
backwards from the cursor — ``ROW(created_at, id) < ROW(…)`` as an ``Index Cond`` — with no
``Sort`` node and no row discarded by a filter, and touch no more pages than the first page.
"""

from __future__ import annotations

import pytest
from django.db import connection
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from django_orders.models import Order
from django_orders.pagination import KeysetPagination
from tests.explain_helpers import assert_keyset_index_scan, blocks, explain, list_page_sql

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

TENANT = "shop-big"
ROWS = 60_000
DEPTH = 45_000


@pytest.fixture
def seeded() -> None:
    """60,000 orders of one tenant, 30,000 of others; timestamps tie in pairs; ANALYZE."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO django_orders_order
                (id, tenant_id, status, version, total_cents, currency, metadata,
                 created_at, updated_at)
            SELECT gen_random_uuid(),
                   CASE WHEN i <= %s THEN %s ELSE 'shop-' || (i %% 10) END,
                   (ARRAY['draft', 'confirmed', 'closed'])[1 + i %% 3],
                   1, NULL, 'USD', '{}'::jsonb,
                   timestamptz '2026-01-01 00:00:00+00'
                       + (i / 2) * interval '1 millisecond' + (i %% 5) * interval '1 microsecond',
                   now()
            FROM generate_series(1, %s) AS i
            """,
            [ROWS, TENANT, ROWS + 30_000],
        )
        cursor.execute("ANALYZE django_orders_order")


def cursor_at(depth: int, status: str | None = None) -> str:
    """The cursor a walk holds after ``depth`` rows (built directly: walking is slow)."""
    queryset = Order.objects.filter(tenant_id=TENANT)
    params = {}
    if status is not None:
        queryset = queryset.filter(status=status)
        params["status"] = status
    row = queryset.order_by("-created_at", "-id")[depth - 1]
    django_request = APIRequestFactory().get("/orders", params)
    django_request.tenant_id = TENANT  # type: ignore[attr-defined]
    paginator = KeysetPagination(filter_query_params=("status",))
    return paginator.encode_cursor(Request(django_request), queryset, row)


@pytest.mark.usefixtures("seeded")
def test_a_deep_page_reads_the_tenant_index_backwards_from_the_cursor() -> None:
    first_sql, _ = list_page_sql(TENANT, {"limit": 20})
    deep_sql, deep_ids = list_page_sql(TENANT, {"limit": 20, "cursor": cursor_at(DEPTH)})

    text, plan = explain(deep_sql)
    print(text)  # shown with -s; the report quotes it
    assert_keyset_index_scan(text, plan, "orders_order_tenant_keyset")
    assert "tenant_id)::text = 'shop-big'::text" in plan["Plans"][0]["Index Cond"]

    # The page is the right one: rows DEPTH+1 .. DEPTH+20 of the walk.
    walk = Order.objects.filter(tenant_id=TENANT).order_by("-created_at", "-id")
    assert deep_ids == [str(pk) for pk in walk.values_list("id", flat=True)[DEPTH : DEPTH + 20]]

    # Cost does not grow with depth: no more buffers than the first page, give or take
    # the index levels.
    _, first_plan = explain(first_sql)
    assert blocks(plan) <= blocks(first_plan) + 5, (blocks(plan), blocks(first_plan))


@pytest.mark.usefixtures("seeded")
def test_a_deep_filtered_page_reads_the_status_index_backwards_from_the_cursor() -> None:
    params = {"limit": 20, "status": "confirmed"}
    first_sql, _ = list_page_sql(TENANT, params)
    deep_sql, deep_ids = list_page_sql(
        TENANT, {**params, "cursor": cursor_at(DEPTH // 3, "confirmed")}
    )

    text, plan = explain(deep_sql)
    print(text)
    assert_keyset_index_scan(text, plan, "orders_order_status_keyset")
    assert "(status)::text = 'confirmed'::text" in plan["Plans"][0]["Index Cond"]

    walk = Order.objects.filter(tenant_id=TENANT, status="confirmed").order_by("-created_at", "-id")
    expected = walk.values_list("id", flat=True)[DEPTH // 3 : DEPTH // 3 + 20]
    assert deep_ids == [str(pk) for pk in expected]

    _, first_plan = explain(first_sql)
    assert blocks(plan) <= blocks(first_plan) + 5, (blocks(plan), blocks(first_plan))
