"""``KeysetPagination`` as a host uses it on its own views (docs/guide/keyset-pagination.md).

The orders endpoint itself is tested in ``test_list.py``; here: other models and
orderings, the row-value predicate and its expanded fallback, cursor signing and scope,
settings, and the schema hooks.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from rest_framework import serializers
from rest_framework.generics import ListAPIView
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from django_orders.models import IdempotencyKey, Order
from django_orders.pagination import KeysetPagination, RowValueComparison
from django_orders.problems import Problem

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
factory = APIRequestFactory()


def make_order(created_at: dt.datetime = T0, tenant: str = "shop-1", **fields: Any) -> Order:
    return Order.objects.create(
        id=uuid.uuid4(),
        tenant_id=tenant,
        currency="USD",
        created_at=created_at,
        updated_at=created_at,
        **fields,
    )


def make_key(created_at: dt.datetime, n: int) -> IdempotencyKey:
    return IdempotencyKey.objects.create(
        tenant_id="shop-1",
        key=f"k{n}",
        method="POST",
        path="/orders",
        fingerprint="0" * 64,
        created_at=created_at,
        expires_at=created_at + dt.timedelta(hours=1),
    )


def drf_request(tenant: str | None = "shop-1", **params: Any) -> Request:
    django_request = factory.get("/things", params)
    django_request.tenant_id = tenant  # type: ignore[attr-defined]  # as the middleware does
    return Request(django_request)


def walk(paginator_factory: Any, queryset: Any, **params: Any) -> list[Any]:
    """Every row of ``queryset`` page by page, a fresh paginator per request."""
    rows: list[Any] = []
    for _ in range(1000):
        paginator = paginator_factory()
        rows += paginator.paginate_queryset(queryset, drf_request(**params))
        if paginator.next_cursor is None:
            return rows
        params["cursor"] = paginator.next_cursor
    raise AssertionError("the walk did not end")


def expected(rows: Sequence[Any], reverse: bool = True) -> list[Any]:
    return sorted(rows, key=lambda r: (r.created_at, r.pk), reverse=reverse)


def cursor_problem(paginator: KeysetPagination, queryset: Any, **params: Any) -> Problem:
    with pytest.raises(Problem) as caught:
        paginator.paginate_queryset(queryset, drf_request(**params))
    assert caught.value.problem_code == "invalid_cursor"
    return caught.value


# -- a host's own list view --------------------------------------------------------------


class KeySerializer(serializers.ModelSerializer):
    class Meta:
        model = IdempotencyKey
        fields = ("id", "key")


class KeyListView(ListAPIView):
    """A host's generic view: integer ids, no tenant, the paginator as pagination_class."""

    queryset = IdempotencyKey.objects.all()
    serializer_class = KeySerializer
    pagination_class = KeysetPagination


def test_as_pagination_class_of_a_generic_view() -> None:
    keys = [make_key(T0 + dt.timedelta(seconds=i // 2), i) for i in range(7)]
    seen: list[int] = []
    params: dict[str, Any] = {"limit": 3}
    for _ in range(10):
        response = KeyListView.as_view()(factory.get("/keys", params))
        assert response.status_code == 200
        assert set(response.data) == {"items", "nextCursor"}
        seen += [item["id"] for item in response.data["items"]]
        if response.data["nextCursor"] is None:
            break
        assert response["Link"].startswith("<http://testserver/keys?")
        params["cursor"] = response.data["nextCursor"]
    assert seen == [k.pk for k in expected(keys)]


def test_an_invalid_limit_is_a_400_in_a_hosts_view() -> None:
    response = KeyListView.as_view()(factory.get("/keys", {"limit": "0"}))
    assert response.status_code == 400


def test_ascending_ordering() -> None:
    orders = [make_order(T0 + dt.timedelta(seconds=i % 3)) for i in range(8)]
    rows = walk(
        lambda: KeysetPagination(ordering=("created_at", "id")), Order.objects.all(), limit=3
    )
    assert rows == expected(orders, reverse=False)


def test_timestamps_before_the_epoch_and_on_whole_seconds() -> None:
    """Cursor timestamps are integer microseconds, exact on either side of 1970."""
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    stamps = [
        epoch - dt.timedelta(microseconds=1),
        epoch,
        epoch + dt.timedelta(microseconds=1),
        dt.datetime(1900, 1, 1, tzinfo=dt.UTC),
        dt.datetime(2262, 4, 11, 23, 47, 16, 854775, tzinfo=dt.UTC),
        T0,
        T0 + dt.timedelta(microseconds=999_999),
    ]
    orders = [make_order(stamp) for stamp in stamps for _ in range(2)]
    assert walk(KeysetPagination, Order.objects.all(), limit=1) == expected(orders)


@override_settings(USE_TZ=False)
def test_naive_timestamps_when_use_tz_is_off() -> None:
    naive = dt.datetime(2026, 3, 1, 12, 0, 0)
    orders = [make_order(naive + dt.timedelta(microseconds=i // 2)) for i in range(6)]
    assert walk(KeysetPagination, Order.objects.all(), limit=1) == expected(orders)


# -- the predicate -----------------------------------------------------------------------


def page_sql(paginator: KeysetPagination, position: Sequence[Any]) -> str:
    return str(paginator.get_page_queryset(Order.objects.all(), position, 5).query)


def test_the_predicate_is_a_row_value_comparison() -> None:
    sql = page_sql(KeysetPagination(), [T0, uuid.uuid4()])
    assert '("django_orders_order"."created_at", "django_orders_order"."id") < (' in sql
    assert " OR " not in sql
    assert (
        'ORDER BY "django_orders_order"."created_at" DESC, "django_orders_order"."id" DESC' in sql
    )
    assert sql.endswith("LIMIT 6")


def test_ascending_uses_greater_than() -> None:
    sql = page_sql(KeysetPagination(ordering=("created_at", "id")), [T0, uuid.uuid4()])
    assert '"django_orders_order"."id") > (' in sql


class ExpandedPagination(KeysetPagination):
    """The predicate other databases get: no row values."""

    row_value_vendors = frozenset()


def test_the_expanded_fallback_predicate() -> None:
    sql = page_sql(ExpandedPagination(), [T0, uuid.uuid4()])
    assert ") < (" not in sql
    assert " OR " in sql


@pytest.mark.parametrize("ordering", [("-created_at", "-id"), ("created_at", "id")])
def test_the_expanded_fallback_walks_the_same_rows(ordering: tuple[str, str]) -> None:
    orders = [make_order(T0 + dt.timedelta(microseconds=i // 3)) for i in range(10)]
    queryset = Order.objects.all()
    by_rows = walk(lambda: KeysetPagination(ordering=ordering), queryset, limit=2)
    by_expansion = walk(lambda: ExpandedPagination(ordering=ordering), queryset, limit=2)
    assert by_rows == by_expansion == expected(orders, reverse=ordering[0].startswith("-"))


def test_row_value_comparison_arguments() -> None:
    with pytest.raises(ValueError, match="operator"):
        RowValueComparison(["created_at"], "<=", [T0])
    with pytest.raises(ValueError, match="as many"):
        RowValueComparison(["created_at", "id"], "<", [T0])


def test_row_value_comparison_in_a_hosts_own_filter() -> None:
    older, newer = make_order(T0), make_order(T0 + dt.timedelta(seconds=1))
    queryset = Order.objects.filter(
        RowValueComparison(["created_at", "id"], "<", [newer.created_at, newer.id])
    )
    assert list(queryset) == [older]


@pytest.mark.parametrize(
    "ordering",
    [(), ("-created_at", "id"), ("-created_at", "-nope"), ("-metadata", "-id")],
)
def test_misconfigured_ordering(ordering: tuple[str, ...]) -> None:
    with pytest.raises(ImproperlyConfigured):
        KeysetPagination(ordering=ordering).paginate_queryset(Order.objects.all(), drf_request())


# -- limits ------------------------------------------------------------------------------


def test_class_page_sizes_override_the_settings() -> None:
    for i in range(5):
        make_order(T0 + dt.timedelta(seconds=i))
    paginator = KeysetPagination(page_size=2, max_page_size=3)
    assert len(paginator.paginate_queryset(Order.objects.all(), drf_request())) == 2
    assert len(paginator.paginate_queryset(Order.objects.all(), drf_request(limit=3))) == 3
    with pytest.raises(Problem) as caught:
        paginator.paginate_queryset(Order.objects.all(), drf_request(limit=4))
    assert caught.value.problem_code == "invalid_limit"
    assert "1 to 3" in caught.value.problem_detail


@override_settings(DJANGO_ORDERS={"PAGE_SIZE": 50, "MAX_PAGE_SIZE": 10})
def test_the_default_page_size_never_exceeds_the_maximum() -> None:
    for i in range(12):
        make_order(T0 + dt.timedelta(seconds=i))
    assert len(KeysetPagination().paginate_queryset(Order.objects.all(), drf_request())) == 10


# -- cursors -----------------------------------------------------------------------------


def a_cursor(paginator: KeysetPagination | None = None, queryset: Any = None, **params: Any) -> str:
    paginator = paginator or KeysetPagination()
    queryset = queryset if queryset is not None else Order.objects.all()
    paginator.paginate_queryset(queryset, drf_request(limit=1, **params))
    assert paginator.next_cursor is not None
    return paginator.next_cursor


@pytest.fixture
def two_orders() -> list[Order]:
    return [make_order(T0), make_order(T0 + dt.timedelta(seconds=1))]


@pytest.mark.usefixtures("two_orders")
def test_a_cursor_is_bound_to_the_ordering() -> None:
    cursor = a_cursor(KeysetPagination(ordering=("created_at", "id")))
    cursor_problem(KeysetPagination(), Order.objects.all(), cursor=cursor)


@pytest.mark.usefixtures("two_orders")
def test_a_cursor_is_bound_to_the_model() -> None:
    for i in range(2):
        make_key(T0 + dt.timedelta(seconds=i), i)
    cursor = a_cursor(queryset=IdempotencyKey.objects.all())
    cursor_problem(KeysetPagination(), Order.objects.all(), cursor=cursor)


@pytest.mark.usefixtures("two_orders")
def test_a_cursor_is_bound_to_the_filter_parameters() -> None:
    paginator = KeysetPagination(filter_query_params=("status", "currency"))
    cursor = a_cursor(paginator, currency="USD")
    assert paginator.paginate_queryset(
        Order.objects.all(), drf_request(cursor=cursor, currency="USD")
    )
    cursor_problem(paginator, Order.objects.all(), cursor=cursor, currency="EUR")
    cursor_problem(paginator, Order.objects.all(), cursor=cursor)
    problem = cursor_problem(paginator, Order.objects.all(), cursor=cursor, status="draft")
    assert "another tenant or filter" in problem.problem_detail


@pytest.mark.usefixtures("two_orders")
def test_a_cursor_is_bound_to_the_tenant() -> None:
    cursor = a_cursor()
    cursor_problem(KeysetPagination(), Order.objects.all(), cursor=cursor, tenant="shop-2")
    cursor_problem(KeysetPagination(), Order.objects.all(), cursor=cursor, tenant=None)


class PerUserPagination(KeysetPagination):
    def get_cursor_scope(self, request: Request) -> list[Any]:
        return [*super().get_cursor_scope(request), request.query_params.get("user")]


@pytest.mark.usefixtures("two_orders")
def test_the_scope_can_be_extended() -> None:
    cursor = a_cursor(PerUserPagination(), user="ann")
    cursor_problem(PerUserPagination(), Order.objects.all(), cursor=cursor, user="bob")


@pytest.mark.usefixtures("two_orders")
def test_cursors_survive_a_secret_key_rotation() -> None:
    with override_settings(SECRET_KEY="the-old-key-" * 4):
        cursor = a_cursor()
    with override_settings(
        SECRET_KEY="the-new-key-" * 4, SECRET_KEY_FALLBACKS=["the-old-key-" * 4]
    ):
        assert KeysetPagination().paginate_queryset(Order.objects.all(), drf_request(cursor=cursor))
    with override_settings(SECRET_KEY="the-new-key-" * 4):
        cursor_problem(KeysetPagination(), Order.objects.all(), cursor=cursor)


@pytest.mark.parametrize(
    "payload",
    [
        "x",
        [],
        [["shop-1"]],
        [["shop-1"], [1]],
        [["shop-1"], [1, "ab", 3]],
        [["shop-1"], [1.5, uuid.UUID(int=1).hex]],  # a float timestamp loses microseconds
        [["shop-1"], [True, uuid.UUID(int=1).hex]],
        [["shop-1"], ["1", uuid.UUID(int=1).hex]],
        [["shop-1"], [10**20, uuid.UUID(int=1).hex]],  # beyond datetime's range
        [["shop-1"], [1, "not-hex"]],
        [["shop-1"], [1, 1]],
        {"scope": ["shop-1"]},
    ],
)
def test_a_signed_cursor_of_the_wrong_shape_is_refused(payload: Any) -> None:
    """Even a correctly signed payload is checked (a bug must not become a 500)."""
    paginator = KeysetPagination()
    cursor = paginator.get_signer(Order).sign_object(payload)
    cursor_problem(paginator, Order.objects.all(), cursor=cursor)


def test_a_cursor_names_the_last_row_of_the_page(two_orders: list[Order]) -> None:
    _older, newer = two_orders
    paginator = KeysetPagination()
    payload = paginator.get_signer(Order).unsign_object(a_cursor(paginator))
    micros = (newer.created_at - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(
        microseconds=1
    )
    assert payload == [["shop-1"], [micros, newer.id.hex]]


def test_next_link_keeps_the_query_and_replaces_the_cursor(two_orders: list[Order]) -> None:
    make_order(T0 + dt.timedelta(seconds=2))
    paginator = KeysetPagination()
    first = a_cursor()
    paginator.paginate_queryset(
        Order.objects.all(), drf_request(limit=1, cursor=first, status="draft")
    )
    response = paginator.get_paginated_response(["x"])
    link = response["Link"]
    assert link.startswith("<http://testserver/things?")
    assert link.endswith('>; rel="next"')
    assert f"cursor={paginator.next_cursor}" in link
    assert first not in link
    assert "limit=1" in link
    assert "status=draft" in link
    assert response.data == {"items": ["x"], "nextCursor": paginator.next_cursor}


# -- schema ------------------------------------------------------------------------------


def test_schema_hooks() -> None:
    paginator = KeysetPagination()
    names = [p["name"] for p in paginator.get_schema_operation_parameters(view=None)]
    assert names == ["cursor", "limit"]
    schema = paginator.get_paginated_response_schema({"type": "array"})
    assert schema["required"] == ["items", "nextCursor"]
    assert schema["properties"]["items"] == {"type": "array"}
