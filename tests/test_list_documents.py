"""The list's documents made by PostgreSQL (``sql.fetch_page(documents=True)``,
docs/benchmarks.md, Finding 15) are byte for byte the documents of the instances
(``to_dict()``), on the same rows; anything a host changed keeps the instances."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.db.models import TextField
from django.db.models.signals import post_init, pre_init
from rest_framework.test import APIClient

from django_orders import sql
from django_orders.models import Order
from django_orders.renderers import OrdersJSONRenderer

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

T0 = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
EDGE_METADATA: list[dict[str, Any]] = [
    {},
    {"source": "seed"},
    # jsonb orders keys by length first; to_dict() sorts the top level only.
    {"zz": 1, "a": {"zz": 1, "a": [3, 2, 1]}, "mm": None, "B": True, "b": False},
    {"émoji 🎉": 'naïve — “quoted” "esc" back\\slash', "ключ": "значение"},
    {"ctl": "tab\tnl\ncr\rbs\bff\f\x01\x1f\x7f", "sep": "\u2028\u2029", "html": "<>&'"},
    {"big": 2**70, "neg": -(2**63), "float": 0.1, "exp": 1e100, "tiny": 1.5e-7, "zero": -0.0},
    {"nested": {"list": [{"b": 1, "a": 2}, [], {}], "s": ""}, "": "empty key"},
]


def make(index: int, **fields: Any) -> Order:
    at = T0 - dt.timedelta(seconds=index)
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "tenant_id": "shop-1",
        "status": "draft",
        "currency": "USD",
        "created_at": at,
        "updated_at": at,
        "metadata": EDGE_METADATA[index % len(EDGE_METADATA)],
        **fields,
    }
    return Order.objects.create(**values)


@pytest.fixture
def edge_orders() -> list[Order]:
    """Orders covering what a document can hold: every metadata above, nulls, the
    largest numbers, microseconds 0 and 999999, other time zones, an early year."""
    orders = [make(i) for i in range(len(EDGE_METADATA))]
    berlin = dt.timezone(dt.timedelta(hours=1))
    orders += [
        make(10, status="confirmed", total_cents=2**63 - 1, confirmed_at=T0, version=2**31 - 1),
        make(
            11,
            status="closed",
            total_cents=0,
            version=3,
            confirmed_at=dt.datetime(2026, 1, 1, 0, 0, 0, 999_999, tzinfo=dt.UTC),
            closed_at=dt.datetime(2026, 1, 1, 23, 59, 59, 1, tzinfo=berlin),
        ),
        make(12, created_at=T0 - dt.timedelta(seconds=12, microseconds=123_456)),
        make(13, updated_at=dt.datetime(5, 1, 1, tzinfo=dt.UTC)),
        make(14, updated_at=dt.datetime(999, 12, 31, 23, 59, 59, 10, tzinfo=dt.UTC)),
        make(15, tenant_id="shop-1", currency="€€€", status="draft", total_cents=None),
    ]
    # Two orders sharing created_at: the id breaks the tie, in the cursor too.
    orders += [make(20), make(20)]
    return orders


def rendered(documents: list[dict[str, Any]]) -> bytes:
    return OrdersJSONRenderer().render({"items": documents, "nextCursor": None})


def documents_of(filters: dict[str, Any], position: Any, limit: int) -> list[Any]:
    return sql.fetch_page(
        "default", Order, filters, sql.DOCUMENT_ORDERING, position, limit, documents=True
    )


def instance_documents(filters: dict[str, Any], position: Any, limit: int) -> list[Any]:
    page = sql.fetch_page("default", Order, filters, sql.DOCUMENT_ORDERING, position, limit)
    return [order.to_dict() for order in page]


@pytest.mark.parametrize("status", [None, "draft", "confirmed"])
def test_documents_are_the_instances_documents_byte_for_byte(
    edge_orders: list[Order], status: str | None
) -> None:
    filters = {"tenant_id": "shop-1", **({"status": status} if status else {})}
    documents = documents_of(filters, None, 100)
    expected = instance_documents(filters, None, 100)
    assert len(documents) == len([o for o in edge_orders if status in (None, o.status)])
    assert rendered(documents) == rendered(expected)
    assert [list(d.items()) for d in documents] == [list(d.items()) for d in expected]


def test_documents_after_a_position_and_their_keys(edge_orders: list[Order]) -> None:
    filters = {"tenant_id": "shop-1"}
    first = documents_of(filters, None, 4)
    instances = sql.fetch_page("default", Order, filters, sql.DOCUMENT_ORDERING, None, 4)
    # The cursor's key parsed back from a document is the instance's, microseconds too.
    assert [sql.document_key(d) for d in first] == [(o.created_at, o.id) for o in instances]
    position = sql.document_key(first[3])
    assert rendered(documents_of(filters, position, 4)) == (
        rendered(instance_documents(filters, position, 4))
    )


@pytest.fixture
def instance_path() -> Iterator[None]:
    """A ``post_init`` receiver: the view then makes instances, as a host's would need."""

    def receiver(**kwargs: Any) -> None:
        pass

    post_init.connect(receiver, sender=Order)
    try:
        yield
    finally:
        post_init.disconnect(receiver, sender=Order)


def walk_bodies(client: APIClient, limit: int) -> list[tuple[bytes, str | None]]:
    """Every page's body and ``Link`` of the shop's list, ``limit`` at a time."""
    pages: list[tuple[bytes, str | None]] = []
    query: dict[str, Any] = {"limit": limit}
    while True:
        response = client.get("/orders", query)
        assert response.status_code == 200, response.content
        pages.append((response.content, response.headers.get("Link")))
        cursor = response.json()["nextCursor"]
        if cursor is None:
            return pages
        query["cursor"] = cursor


def test_the_api_answers_the_same_bytes_and_cursors_either_way(
    edge_orders: list[Order], tenant_api: APIClient, request: pytest.FixtureRequest
) -> None:
    assert sql.can_fetch_documents(Order, connection)
    fast = walk_bodies(tenant_api, 3)
    request.getfixturevalue("instance_path")
    assert not sql.can_fetch_documents(Order, connection)
    assert walk_bodies(tenant_api, 3) == fast
    assert len(fast) == -(-len(edge_orders) // 3)


def test_a_host_receiver_or_override_keeps_the_instances(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert sql.can_fetch_documents(Order, connection)

    def receiver(**kwargs: Any) -> None:
        pass

    pre_init.connect(receiver, sender=Order)
    try:
        assert not sql.can_fetch_documents(Order, connection)
    finally:
        pre_init.disconnect(receiver, sender=Order)
    with monkeypatch.context() as patch:
        patch.setattr(Order, "to_dict", lambda self: {"id": str(self.id)})
        assert not sql.can_fetch_documents(Order, connection)
    with monkeypatch.context() as patch:
        patch.setattr(Order, "from_db", classmethod(lambda cls, *args: None))
        assert not sql.can_fetch_documents(Order, connection)
    with monkeypatch.context() as patch:
        patch.setattr("django.conf.settings.USE_TZ", False)
        assert not sql.can_fetch_documents(Order, connection)
    assert sql.can_fetch_documents(Order, connection)


def test_a_host_override_is_what_the_list_shows(
    monkeypatch: pytest.MonkeyPatch, tenant_api: APIClient
) -> None:
    make(0)
    monkeypatch.setattr(Order, "to_dict", lambda self: {"id": str(self.id), "host": True})
    items = tenant_api.get("/orders").json()["items"]
    assert [item["host"] for item in items] == [True]


def test_a_field_with_a_decoder_or_of_another_class_keeps_the_instances(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keeps_fields = sql._keeps_order_fields.__wrapped__  # uncached: fields patched below
    assert keeps_fields(Order)
    metadata = Order._meta.get_field("metadata")
    with monkeypatch.context() as patch:
        patch.setattr(metadata, "decoder", json.JSONDecoder)
        assert not keeps_fields(Order)
    with monkeypatch.context() as patch:
        patch.setattr(Order._meta.get_field("currency"), "__class__", TextField)
        assert not keeps_fields(Order)
    assert keeps_fields(Order)
