"""SQL statements per request (issue 3 targets), not counting transaction control and NOTIFY.

create 1 on PostgreSQL (claim the key, insert the order and the event and store the
response in one statement) and 4 elsewhere,
idempotent replay ≤ 2 (the claim that finds the key, read the stored response), get 1,
confirm and close 1 on PostgreSQL (the update conditional on the ``If-Match``, its event
and the ``NOTIFY``; 2 when the order is locked and read first: ``If-Match: *``, a key) and
3 elsewhere, and none at all for a request refused for its tenant.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.db import connection
from django.db.models.signals import post_init
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from django_orders import idempotency, services
from django_orders.models import Order
from django_orders.serializers import OrderCreateSerializer
from tests.orders_api import OrdersClient

pytestmark = pytest.mark.django_db

_NOT_COUNTED = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "NOTIFY")


class HostCreateSerializer(OrderCreateSerializer):
    """A host's serializer (the same fields): the key is claimed before it runs."""


class Statements(list[str]):
    pass


@contextmanager
def counted() -> Iterator[Statements]:
    statements = Statements()
    with CaptureQueriesContext(connection) as context:
        yield statements
    statements.extend(
        query["sql"]
        for query in context.captured_queries
        if not query["sql"].lstrip().upper().startswith(_NOT_COUNTED)
    )


def test_create_takes_1_statement_on_postgresql_and_4_elsewhere(api: OrdersClient) -> None:
    idempotency._RECENT_KEYS.keys.clear()  # a key this process has not claimed before
    with counted() as statements:
        response = api.create({"totalCents": 1, "metadata": {"a": "b"}}, key="count-create")
    assert response.status_code == 201
    if connection.vendor == "postgresql":
        # The key's claim, with its response, guards the order's and the event's inserts.
        assert len(statements) == 1, statements
        assert statements[0].upper().startswith("WITH CLAIMED AS (INSERT INTO")
        assert "ON CONFLICT" in statements[0].upper()
    else:
        assert len(statements) == 4, statements
        assert statements[0].upper().startswith("INSERT INTO")
        assert "ON CONFLICT" in statements[0].upper()
        # The key's response is stored after the order and its event.
        assert "UPDATE" in statements[-1].upper()


@pytest.mark.parametrize(
    "host",
    [
        {"CREATE_SERIALIZER": "tests.test_query_counts.HostCreateSerializer"},
        {"EVENT_ENRICHERS": ["tests.test_outbox_recording.correlate"]},
        {"ORDER_RULES": [lambda change: None]},
        {},  # with a post_init receiver on the order model
    ],
)
def test_where_host_code_runs_before_the_writes_the_key_is_claimed_first(
    api: OrdersClient, host: dict[str, object]
) -> None:
    # What a replay must not run (docs/guide/idempotency.md): the host's serializer, its
    # enrichers, its rules, its receivers of the instances' signals.
    def receiver(**kwargs: object) -> None:
        pass

    idempotency._RECENT_KEYS.keys.clear()
    if not host:
        post_init.connect(receiver, sender=Order)
    try:
        with override_settings(DJANGO_ORDERS=host), counted() as statements:
            response = api.create({"totalCents": 1}, key="count-host-create")
    finally:
        post_init.disconnect(receiver, sender=Order)
    assert response.status_code == 201
    assert len(statements) == (2 if connection.vendor == "postgresql" else 4), statements
    assert statements[0].upper().startswith("INSERT INTO")


def test_a_replay_takes_at_most_2_statements(api: OrdersClient) -> None:
    api.create({}, key="count-replay")
    with counted() as statements:
        response = api.create({}, key="count-replay")
    assert response["Idempotent-Replayed"] == "true"
    assert len(statements) <= 2, statements


def test_get_takes_1_statement(api: OrdersClient) -> None:
    order = services.create_order("shop-1")
    with counted() as statements:
        response = api.call("GET", f"/orders/{order.id}")
    assert response.status_code == 200
    assert len(statements) == 1, statements


def test_a_304_takes_1_statement(api: OrdersClient) -> None:
    order = services.create_order("shop-1")
    with counted() as statements:
        response = api.call("GET", f"/orders/{order.id}", headers={"If-None-Match": '"1"'})
    assert response.status_code == 304
    assert len(statements) == 1, statements


def test_a_malformed_id_takes_no_statement(api: OrdersClient) -> None:
    with counted() as statements:
        response = api.call("GET", "/orders/not-a-uuid")
    assert response.status_code == 404
    assert statements == []


def test_confirm_and_close_take_1_statement_on_postgresql_and_3_elsewhere(
    api: OrdersClient,
) -> None:
    order = services.create_order("shop-1")
    with counted() as confirm_statements:
        assert api.confirm(str(order.id), {"totalCents": 5}).status_code == 200
    with counted() as close_statements:
        assert api.close_order(str(order.id)).status_code == 200
    if connection.vendor == "postgresql":
        # The update conditional on the If-Match, its event and NOTIFY (Finding 16).
        for statements in (confirm_statements, close_statements):
            assert len(statements) == 1, statements
            assert statements[0].startswith("WITH changed AS (UPDATE")
            assert "jsonb_build_object(" in statements[0]
    else:
        assert len(confirm_statements) == 3, confirm_statements
        assert len(close_statements) == 3, close_statements


def test_the_locked_transitions_take_2_statements_on_postgresql_and_3_elsewhere(
    api: OrdersClient,
) -> None:
    # "*" is no version to make the update conditional on: the order is locked and read.
    order = services.create_order("shop-1")
    with counted() as confirm_statements:
        assert api.confirm(str(order.id), {"totalCents": 5}, if_match="*").status_code == 200
    with counted() as close_statements:
        assert api.close_order(str(order.id), if_match="*").status_code == 200
    postgres = connection.vendor == "postgresql"
    assert len(confirm_statements) == (2 if postgres else 3), confirm_statements
    assert len(close_statements) == (2 if postgres else 3), close_statements
    if postgres:  # SQLite locks the whole database instead
        assert "FOR UPDATE" in confirm_statements[0].upper()
        assert "FOR UPDATE" in close_statements[0].upper()


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_a_transition_opens_none_on_postgresql() -> None:
    """The conditional statement is atomic by itself (Finding 16): no BEGIN / COMMIT. One
    that changes nothing (here: another version) is answered on the locked row, in a
    transaction; so is a request with a key, as before."""
    seen: list[tuple[str, bool]] = []

    def record(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        seen.append((sql.split(None, 1)[0].upper(), connection.in_atomic_block))
        return execute(sql, params, many, context)

    api = OrdersClient()
    order = services.create_order("shop-1")
    with connection.execute_wrapper(record):
        assert api.confirm(str(order.id), {"totalCents": 1}).status_code == 200
        changed = list(seen)
        seen.clear()
        assert api.close_order(str(order.id), if_match='"1"').status_code == 412
        refused = list(seen)
        seen.clear()
        assert api.close_order(str(order.id), headers={"Idempotency-Key": "k"}).status_code == 200
    if connection.vendor == "postgresql":
        assert changed == [("WITH", False)]
        assert refused == [("WITH", False), ("SELECT", True)]
        assert [verb for verb, _ in seen] == ["INSERT", "SELECT", "WITH", "UPDATE"]
    else:  # the request's transaction, as before
        statements = [atomic for verb, atomic in changed + refused + seen if verb != "BEGIN"]
        assert set(statements) == {True}


def test_confirm_with_a_key_adds_only_the_claim_and_the_stored_response(
    api: OrdersClient,
) -> None:
    order = services.create_order("shop-1")
    with counted() as statements:
        response = api.confirm(str(order.id), {"totalCents": 5}, headers={"Idempotency-Key": "c"})
    assert response.status_code == 200
    assert len(statements) == (4 if connection.vendor == "postgresql" else 5), statements


@pytest.mark.parametrize(
    ("tenant", "path"), [(None, "/orders"), ("bad tenant", "/orders"), (None, "/orders/x")]
)
def test_a_request_refused_for_its_tenant_makes_no_query(tenant: str | None, path: str) -> None:
    client = OrdersClient(tenant=tenant)
    with counted() as statements:
        response = client.call("POST", path, {})
    assert response.status_code == 400
    assert statements == []


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_the_create_opens_none_on_postgresql() -> None:
    """One statement is atomic by itself: no BEGIN / COMMIT around it (Finding 14). A
    replay opens the transaction its lookup (and a takeover's writes) runs in."""
    seen: list[tuple[str, bool]] = []

    def record(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        seen.append((sql.split(None, 1)[0].upper(), connection.in_atomic_block))
        return execute(sql, params, many, context)

    api = OrdersClient()
    idempotency._RECENT_KEYS.keys.clear()
    with connection.execute_wrapper(record):
        assert api.create({"totalCents": 1}, key="no-transaction").status_code == 201
        created = list(seen)
        seen.clear()
        idempotency._RECENT_KEYS.keys.clear()  # as a retry reaching another process
        assert api.create({"totalCents": 1}, key="no-transaction").status_code == 201
        elsewhere = list(seen)
        seen.clear()
        assert api.create({"totalCents": 1}, key="no-transaction").status_code == 201
    if connection.vendor == "postgresql":
        assert created == [("WITH", False)]
        assert elsewhere == [("WITH", False), ("SELECT", True)]  # the claim, the lookup
        # A key this process claimed is claimed first on a retry, as without deferring.
        assert seen == [("INSERT", True), ("SELECT", True)]
    else:  # the order's, the event's and the key's writes in the request's transaction
        assert {atomic for verb, atomic in created if verb in ("INSERT", "UPDATE")} == {True}
