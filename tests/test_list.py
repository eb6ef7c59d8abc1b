"""``GET /orders`` (docs/api/list-orders.md): the tenant's orders, newest first,
keyset-paginated."""

from __future__ import annotations

import datetime as dt
import re
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection, connections, transaction
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from django_orders import services
from django_orders.models import Order

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
LINK_RE = re.compile(r'^<(?P<url>[^>]+)>; rel="next"$')


def make_order(
    tenant: str = "shop-1",
    *,
    created_at: dt.datetime = T0,
    status: str = "draft",
    order_id: uuid.UUID | None = None,
) -> Order:
    return Order.objects.create(
        id=order_id or uuid.uuid4(),
        tenant_id=tenant,
        status=status,
        currency="USD",
        created_at=created_at,
        updated_at=created_at,
    )


def newest_first(orders: list[Order]) -> list[str]:
    """The contract's order: createdAt descending, then id descending."""
    return [str(o.id) for o in sorted(orders, key=lambda o: (o.created_at, o.id), reverse=True)]


def ids(response: Any) -> list[str]:
    return [item["id"] for item in response.json()["items"]]


def walk(client: APIClient, path: str = "/orders", **params: Any) -> Iterator[Any]:
    """Follow ``nextCursor`` from the first page to the last, yielding each response."""
    query = dict(params)
    for _ in range(10_000):  # bounded: a walk that never ends is a failure, not a hang
        response = client.get(path, query)
        assert response.status_code == 200, response.content
        yield response
        cursor = response.json()["nextCursor"]
        if cursor is None:
            return
        query["cursor"] = cursor
    raise AssertionError("the walk did not end")


def walk_ids(client: APIClient, **params: Any) -> list[str]:
    return [i for response in walk(client, **params) for i in ids(response)]


def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["code"] == code
    assert body["status"] == status
    return body


# -- shape and order ---------------------------------------------------------------------


def test_empty_list(tenant_api: APIClient) -> None:
    response = tenant_api.get("/orders")
    assert response.status_code == 200
    assert response.json() == {"items": [], "nextCursor": None}
    assert "Link" not in response


def test_items_are_orders_as_the_api_shows_them(tenant_api: APIClient) -> None:
    order = make_order()
    response = tenant_api.get("/orders")
    assert response.json()["items"] == [order.to_dict()]


def test_trailing_slash_is_optional(tenant_api: APIClient) -> None:
    make_order()
    assert ids(tenant_api.get("/orders/")) == ids(tenant_api.get("/orders"))


def test_newest_first(tenant_api: APIClient) -> None:
    orders = [make_order(created_at=T0 + dt.timedelta(minutes=i)) for i in (3, 1, 4, 2, 0)]
    assert ids(tenant_api.get("/orders")) == newest_first(orders)


def test_ties_on_created_at_are_broken_by_id_descending(tenant_api: APIClient) -> None:
    """Identical timestamps, across page boundaries: id decides, and no row is lost."""
    orders = [make_order(created_at=T0) for _ in range(7)]
    orders += [make_order(created_at=T0 + dt.timedelta(seconds=1)) for _ in range(3)]
    expected = newest_first(orders)
    assert ids(tenant_api.get("/orders")) == expected
    for limit in (1, 2, 3, 4):
        assert walk_ids(tenant_api, limit=limit) == expected


def test_microsecond_apart_orders_survive_a_page_boundary(tenant_api: APIClient) -> None:
    """The cursor keeps microseconds: a millisecond cursor would skip or repeat rows."""
    base = T0.replace(microsecond=500_000)
    orders = [make_order(created_at=base + dt.timedelta(microseconds=i)) for i in range(6)]
    orders.append(make_order(created_at=base - dt.timedelta(microseconds=1)))
    orders.append(make_order(created_at=T0))  # microsecond == 0
    assert walk_ids(tenant_api, limit=1) == newest_first(orders)


def test_only_the_tenants_own_orders(tenant_api: APIClient) -> None:
    mine = [make_order("shop-1", created_at=T0 + dt.timedelta(seconds=i)) for i in range(3)]
    for i in range(3):
        make_order("shop-2", created_at=T0 + dt.timedelta(seconds=i))
    assert walk_ids(tenant_api, limit=2) == newest_first(mine)


def test_missing_tenant_is_400(drf_client: APIClient) -> None:
    assert_problem(drf_client.get("/orders"), 400, "missing_tenant")


# -- limit -------------------------------------------------------------------------------


def test_default_limit_is_20(tenant_api: APIClient) -> None:
    for i in range(21):
        make_order(created_at=T0 + dt.timedelta(seconds=i))
    response = tenant_api.get("/orders")
    assert len(response.json()["items"]) == 20
    assert response.json()["nextCursor"] is not None


@override_settings(DJANGO_ORDERS={"PAGE_SIZE": 3, "MAX_PAGE_SIZE": 5})
def test_page_sizes_come_from_settings(tenant_api: APIClient) -> None:
    for i in range(6):
        make_order(created_at=T0 + dt.timedelta(seconds=i))
    assert len(ids(tenant_api.get("/orders"))) == 3
    assert len(ids(tenant_api.get("/orders", {"limit": 5}))) == 5
    assert_problem(tenant_api.get("/orders", {"limit": 6}), 400, "invalid_limit")


@pytest.mark.parametrize("limit", ["1", "100"])
def test_limit_bounds_are_accepted(tenant_api: APIClient, limit: str) -> None:
    for i in range(2):
        make_order(created_at=T0 + dt.timedelta(seconds=i))
    response = tenant_api.get("/orders", {"limit": limit})
    assert response.status_code == 200
    assert len(ids(response)) == min(int(limit), 2)


@pytest.mark.parametrize(
    "limit",
    ["0", "101", "-1", "abc", "1.5", "", " 5", "5 ", "+5", "1e2", "0x10", "\u0663", "9" * 5000],
)
def test_invalid_limit(tenant_api: APIClient, limit: str) -> None:
    assert_problem(tenant_api.get("/orders", {"limit": limit}), 400, "invalid_limit")


# -- status filter -----------------------------------------------------------------------


def test_status_filter(tenant_api: APIClient) -> None:
    by_status: dict[str, list[Order]] = {"draft": [], "confirmed": [], "closed": []}
    for i in range(9):
        status = ("draft", "confirmed", "closed")[i % 3]
        by_status[status].append(make_order(created_at=T0 + dt.timedelta(seconds=i), status=status))
    for status, orders in by_status.items():
        assert walk_ids(tenant_api, status=status, limit=2) == newest_first(orders)


@pytest.mark.parametrize("status", ["open", "DRAFT", "", "draft,closed", " draft"])
def test_invalid_filter(tenant_api: APIClient, status: str) -> None:
    problem = assert_problem(tenant_api.get("/orders", {"status": status}), 400, "invalid_filter")
    message = "status must be one of: draft, confirmed, closed."
    assert (problem["detail"], problem["errors"]) == (message, {"status": [message]})


def test_unknown_parameters_are_ignored(tenant_api: APIClient) -> None:
    orders = [make_order(created_at=T0 + dt.timedelta(seconds=i)) for i in range(3)]
    assert walk_ids(tenant_api, limit=2, page=7, offset=1, sort="id") == newest_first(orders)


# -- cursors -----------------------------------------------------------------------------


def first_cursor(client: APIClient, **params: Any) -> str:
    cursor = client.get("/orders", {"limit": 1, **params}).json()["nextCursor"]
    assert cursor is not None
    return str(cursor)


def test_empty_cursor_is_the_first_page(tenant_api: APIClient) -> None:
    for i in range(3):
        make_order(created_at=T0 + dt.timedelta(seconds=i))
    assert ids(tenant_api.get("/orders", {"cursor": ""})) == ids(tenant_api.get("/orders"))


def test_a_cursor_is_short_and_url_safe(tenant_api: APIClient) -> None:
    for i in range(2):
        make_order(created_at=T0 + dt.timedelta(seconds=i))
    cursor = first_cursor(tenant_api)
    assert re.fullmatch(r"[A-Za-z0-9_.-]+", cursor)
    assert len(cursor) < 200


def test_a_cursor_is_not_bound_to_limit(tenant_api: APIClient) -> None:
    orders = [make_order(created_at=T0 + dt.timedelta(seconds=i)) for i in range(10)]
    expected = newest_first(orders)
    page1 = tenant_api.get("/orders", {"limit": 2})
    page2 = tenant_api.get("/orders", {"limit": 5, "cursor": page1.json()["nextCursor"]})
    page3 = tenant_api.get("/orders", {"cursor": page2.json()["nextCursor"]})
    assert ids(page1) + ids(page2) + ids(page3) == expected
    assert [len(ids(p)) for p in (page1, page2, page3)] == [2, 5, 3]
    assert page3.json()["nextCursor"] is None


@pytest.mark.parametrize(
    "cursor",
    ["x", "abc.def", ".", "W10.", "null", "{}", "é", "a" * 5000, "..", "W1tdLFtdXQ.AAAA"],
)
def test_malformed_cursor(tenant_api: APIClient, cursor: str) -> None:
    make_order()
    assert_problem(tenant_api.get("/orders", {"cursor": cursor}), 400, "invalid_cursor")


def test_tampered_cursor(tenant_api: APIClient) -> None:
    for i in range(3):
        make_order(created_at=T0 + dt.timedelta(seconds=i))
    cursor = first_cursor(tenant_api)
    for position in (0, len(cursor) // 3, len(cursor) - 1):
        flipped = "B" if cursor[position] != "B" else "C"
        tampered = cursor[:position] + flipped + cursor[position + 1 :]
        response = tenant_api.get("/orders", {"cursor": tampered})
        assert_problem(response, 400, "invalid_cursor")


def test_a_cursor_of_tenant_a_is_refused_for_tenant_b(drf_client: APIClient) -> None:
    for tenant in ("shop-a", "shop-b"):
        for i in range(3):
            make_order(tenant, created_at=T0 + dt.timedelta(seconds=i))
    cursor = first_cursor(APIClient(HTTP_X_TENANT_ID="shop-a"))
    response = drf_client.get("/orders", {"cursor": cursor}, HTTP_X_TENANT_ID="shop-b")
    assert_problem(response, 400, "invalid_cursor")
    response = drf_client.get("/orders", {"cursor": cursor}, HTTP_X_TENANT_ID="shop-a")
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("issued_with", "used_with"),
    [
        ({"status": "draft"}, {"status": "closed"}),
        ({"status": "draft"}, {}),
        ({}, {"status": "draft"}),
        ({"status": "closed"}, {"status": "confirmed"}),
    ],
)
def test_a_cursor_of_another_filter_is_refused(
    tenant_api: APIClient, issued_with: dict[str, str], used_with: dict[str, str]
) -> None:
    for i in range(6):
        status = ("draft", "confirmed", "closed")[i % 3]
        make_order(created_at=T0 + dt.timedelta(seconds=i), status=status)
        make_order(created_at=T0 + dt.timedelta(seconds=i, microseconds=1), status=status)
    cursor = first_cursor(tenant_api, **issued_with)
    response = tenant_api.get("/orders", {"cursor": cursor, **used_with})
    assert_problem(response, 400, "invalid_cursor")


def test_an_invalid_filter_is_reported_before_the_cursor(tenant_api: APIClient) -> None:
    response = tenant_api.get("/orders", {"cursor": "forged", "status": "open"})
    assert_problem(response, 400, "invalid_filter")


def test_a_cursor_past_the_last_row_gives_an_empty_last_page(tenant_api: APIClient) -> None:
    orders = [make_order(created_at=T0 + dt.timedelta(seconds=i)) for i in range(2)]
    cursor = first_cursor(tenant_api)
    Order.objects.filter(pk=orders[0].pk).delete()  # the only row after the cursor
    response = tenant_api.get("/orders", {"cursor": cursor})
    assert response.json() == {"items": [], "nextCursor": None}


# -- Link header -------------------------------------------------------------------------


def next_link(response: Any) -> str:
    match = LINK_RE.match(response["Link"])
    assert match, response["Link"]
    return match["url"]


def test_link_header_points_at_the_next_page(tenant_api: APIClient) -> None:
    orders = [make_order(created_at=T0 + dt.timedelta(seconds=i)) for i in range(5)]
    seen: list[str] = []
    response = tenant_api.get("/orders", {"limit": 2, "status": "draft", "x": "1"})
    pages = 1
    while "Link" in response:
        url = next_link(response)
        assert url.startswith("http://testserver/orders?")
        assert "limit=2" in url
        assert "status=draft" in url
        assert f"cursor={response.json()['nextCursor']}" in url
        seen += ids(response)
        response = tenant_api.get(url)
        pages += 1
    seen += ids(response)
    assert response.json()["nextCursor"] is None
    assert pages == 3
    assert seen == newest_first(orders)


def test_no_link_header_on_the_last_page(tenant_api: APIClient) -> None:
    for i in range(2):
        make_order(created_at=T0 + dt.timedelta(seconds=i))
    response = tenant_api.get("/orders", {"limit": 2})
    assert response.json()["nextCursor"] is None
    assert "Link" not in response


@override_settings(ROOT_URLCONF="tests.urls_prefixed")
def test_link_header_is_absolute_under_a_mount_prefix(tenant_api: APIClient) -> None:
    for i in range(3):
        make_order(created_at=T0 + dt.timedelta(seconds=i))
    response = tenant_api.get("/api/v1/orders", {"limit": 2})
    url = next_link(response)
    assert url.startswith("http://testserver/api/v1/orders?")
    assert len(ids(tenant_api.get(url))) == 1


@override_settings(ROOT_URLCONF="tests.urls_prefixed", ALLOWED_HOSTS=["api.example.com"])
def test_link_header_uses_the_requests_host_and_scheme(tenant_api: APIClient) -> None:
    for i in range(3):
        make_order(created_at=T0 + dt.timedelta(seconds=i))
    response = tenant_api.get(
        "/api/v1/orders", {"limit": 2}, HTTP_HOST="api.example.com", secure=True
    )
    assert next_link(response).startswith("https://api.example.com/api/v1/orders?")


# -- cost --------------------------------------------------------------------------------


@pytest.mark.parametrize("params", [{}, {"status": "draft"}])
def test_one_query_per_page(tenant_api: APIClient, params: dict[str, str]) -> None:
    for i in range(5):
        make_order(created_at=T0 + dt.timedelta(seconds=i))
    cursor = first_cursor(tenant_api, **params)
    for query in ({"limit": 2, **params}, {"limit": 2, "cursor": cursor, **params}):
        with CaptureQueriesContext(connection) as captured:
            response = tenant_api.get("/orders", query)
        assert response.status_code == 200
        assert len(captured.captured_queries) == 1, captured.captured_queries


def test_a_deep_page_uses_the_keyset_predicate_not_offset(tenant_api: APIClient) -> None:
    for i in range(3):
        make_order(created_at=T0 + dt.timedelta(seconds=i))
    cursor = first_cursor(tenant_api)
    with CaptureQueriesContext(connection) as captured:
        tenant_api.get("/orders", {"cursor": cursor, "limit": 1})
    (query,) = captured.captured_queries
    sql = query["sql"]
    table = r'(?:"django_orders_order"\.)?'
    assert re.search(rf'\({table}"created_at", {table}"id"\) <', sql)
    assert "OFFSET" not in sql.upper()
    assert sql.rstrip().endswith("LIMIT 2")


# -- concurrent writers ------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("status", [None, "draft"])
def test_walk_while_orders_are_created_and_confirmed(status: str | None) -> None:
    """A walk sees every pre-existing order exactly once while another connection writes.

    A writer thread, on its own database connection, creates orders and confirms existing
    drafts — some before the walk's position, some after it — between every two pages.
    Page and writes alternate in lockstep (events, no sleeps), so every page runs against
    committed concurrent changes: a page is one statement, one snapshot, which is the
    granularity at which concurrent writes can be observed at all.
    """
    tenant = "shop-walk"
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    preexisting = [
        make_order(
            tenant,
            created_at=start + dt.timedelta(milliseconds=i // 3),  # ties of three
            status="confirmed" if i % 5 == 0 else "draft",
        )
        for i in range(60)
    ]
    make_order("shop-other", created_at=start)
    drafts = [o for o in preexisting if o.status == "draft"]
    # Spread over the whole walk and taken from both ends: the oldest are still ahead of
    # the walk's position, the newest already behind it (with OFFSET, either kind would
    # shift the rows and make a filtered walk skip or repeat one).
    spread = drafts[::3]
    to_confirm = [o for pair in zip(spread, reversed(spread), strict=True) for o in pair]
    to_confirm = list(dict.fromkeys(to_confirm))[: len(spread)]

    go = threading.Event()
    done = threading.Event()
    stop = threading.Event()
    errors: list[BaseException] = []
    confirmed: list[str] = []
    created: list[str] = []

    def writer() -> None:
        try:
            pending = list(to_confirm)
            for _ in range(100):  # bounded
                if not go.wait(timeout=30) or stop.is_set():
                    return
                go.clear()
                for _ in range(2):
                    created.append(str(services.create_order(tenant).id))
                for order in pending[:2]:
                    with transaction.atomic():
                        locked = services.get_order_for_update(tenant, order.id)
                        services.confirm_order(locked, total_cents=100)
                    confirmed.append(str(order.id))
                del pending[:2]
                done.set()
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
            done.set()
        finally:
            connections.close_all()

    thread = threading.Thread(target=writer)
    thread.start()
    client = APIClient(HTTP_X_TENANT_ID=tenant)
    params: dict[str, Any] = {"limit": 7}
    if status is not None:
        params["status"] = status
    seen: list[str] = []
    try:
        for response in walk(client, **params):
            seen += ids(response)
            done.clear()
            go.set()
            assert done.wait(timeout=30), "the writer did not answer"
            assert not errors, errors
    finally:
        stop.set()
        go.set()
        thread.join(timeout=30)
    assert not errors, errors
    assert confirmed
    assert created

    assert len(seen) == len(set(seen)), "an order was seen twice"
    if status is None:
        expected = {str(o.id) for o in preexisting}
        assert expected <= set(seen)
        assert set(seen) <= expected | set(created)
    else:
        draft_throughout = {str(o.id) for o in drafts} - set(confirmed)
        assert draft_throughout <= set(seen)
        assert set(seen) <= {str(o.id) for o in drafts} | set(created)


def test_the_list_filters_status_values_are_the_models() -> None:
    from django_orders.models import AbstractOrder
    from django_orders.serializers import STATUS_VALUES

    assert tuple(AbstractOrder.Status.values) == STATUS_VALUES


@pytest.mark.parametrize(
    "params",
    [{}, {"limit": "5"}, *({"status": s} for s in ("draft", "confirmed", "closed", "", "x"))],
)
def test_the_serializer_free_filter_path_agrees_with_the_serializer(params: dict[str, str]) -> None:
    """``plainly_valid_filters`` gives the serializer's validated data, or ``None``."""
    from django_orders.serializers import OrderListFilterSerializer, plainly_valid_filters

    fast = plainly_valid_filters(params)
    serializer = OrderListFilterSerializer(data=params)
    if fast is None:
        assert not serializer.is_valid()
        return
    assert serializer.is_valid(), serializer.errors
    assert fast == dict(serializer.validated_data)
