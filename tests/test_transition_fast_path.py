"""Confirm and close in one conditional statement (docs/benchmarks.md, Finding 16): on the
same order, at the same instant, they answer byte for byte what the locked path answers
and write the same event, with the same ``NOTIFY``; a request either path cannot change
is answered by the locked path; anything of the host's keeps the locked path."""

from __future__ import annotations

import datetime as dt
import select
import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, transaction
from django.db.models.signals import post_init, pre_init, pre_save
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIRequestFactory

from django_orders import services, signals, sql, views
from django_orders.models import Order, OutboxEvent
from django_orders.outbox.recording import NOTIFY_CHANNEL
from django_orders.serializers import OrderConfirmSerializer
from tests.orders_api import OrdersClient, assert_problem
from tests.test_list_documents import EDGE_METADATA, T0
from tests.test_query_counts import counted

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

#: The instant both paths change the order at.
NOW = dt.datetime(2026, 12, 7, 10, 30, 0, 123456, tzinfo=dt.UTC)
EVENT_TYPES = {"confirm": "order.confirmed", "close": "order.closed"}


class HostConfirmSerializer(OrderConfirmSerializer):
    """A host's serializer with the package's fields: it sees the body, on the locked path."""


def make(metadata: dict[str, Any], *, status: str = "draft", **fields: Any) -> Order:
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "tenant_id": "shop-1",
        "status": status,
        "currency": "EUR",
        "created_at": T0,
        "updated_at": T0,
        "metadata": metadata,
        **fields,
    }
    if status == "confirmed":
        values.setdefault("version", 2)
        values.setdefault("total_cents", 2**63 - 1)
        values.setdefault("confirmed_at", T0 + dt.timedelta(microseconds=1))
    return Order.objects.create(**values)


ORDERS: list[Callable[[], Order]] = [
    *(lambda metadata=metadata: make(metadata) for metadata in EDGE_METADATA),
    *(lambda metadata=metadata: make(metadata, status="confirmed") for metadata in EDGE_METADATA),
    # Microseconds 0, another time zone, early years, the largest version.
    lambda: make({}, created_at=dt.datetime(5, 1, 1, tzinfo=dt.UTC)),
    lambda: make(
        {"k": "v"},
        status="confirmed",
        created_at=dt.datetime(999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC),
        confirmed_at=dt.datetime(2026, 1, 1, 1, 0, tzinfo=dt.timezone(dt.timedelta(hours=5))),
        total_cents=0,
    ),
    lambda: make({"a": "b"}, version=2**31 - 2),
]


def transition(action: str, order: Order) -> Any:
    api = OrdersClient()
    tag = f'"{order.version}"'
    if action == "confirm":
        return api.confirm(str(order.id), {"totalCents": 1250}, if_match=tag)
    return api.close_order(str(order.id), if_match=tag)


def outcome(order: Order, action: str, one: bool) -> Any:
    """The answer, the order's row and its event's row of ``action`` by one path, at NOW,
    rolled back afterwards so the other path finds the same order."""
    with pytest.MonkeyPatch.context() as patch, transaction.atomic():
        patch.setattr(timezone, "now", lambda: NOW)
        if not one:
            patch.setattr(services, "can_transition_in_one_statement", lambda using: False)
        with counted() as statements:
            response = transition(action, order)
        row = Order.objects.filter(pk=order.pk).values().get()
        event = (
            OutboxEvent.objects.filter(aggregate_id=str(order.id), type=EVENT_TYPES[action])
            .values()
            .get()
        )
        transaction.set_rollback(True)
    if one:
        assert len(statements) == 1, statements
        assert "jsonb_build_object(" in statements[0]
    else:
        assert len(statements) == 2, statements
        assert "FOR UPDATE" in statements[0]
    return response, row, event


@pytest.mark.parametrize("make_order", ORDERS)
def test_both_paths_answer_and_write_the_same(make_order: Callable[[], Order]) -> None:
    order = make_order()
    action = "confirm" if order.status == "draft" else "close"
    one, one_row, one_event = outcome(order, action, True)
    locked, locked_row, locked_event = outcome(order, action, False)

    assert one.status_code == locked.status_code == 200
    assert one.content == locked.content
    assert dict(one.headers) == dict(locked.headers)
    assert one_row == locked_row
    assert one_event.pop("id") != locked_event.pop("id")  # each event its own uuid7
    assert one_event == locked_event
    # The payload is the order as the answer shows it (jsonb: equal as JSON values).
    assert one_event["payload"] == one.json()
    assert one_event["aggregate_version"] == order.version + 1
    assert one["ETag"] == f'"{order.version + 1}"'


def test_the_statement_is_built_from_the_models_and_sends_the_notification() -> None:
    statement = sql._transition_statement(
        connection, Order, ("status", "version", "updated_at", "confirmed_at", "total_cents")
    )
    # Parameters by field, in the statement's order: the SET, then tenant, id, version,
    # status, updated_at; then every column of the event but its payload.
    assert [f.name for f in statement.fields] == [
        "status",
        "version",
        "updated_at",
        "confirmed_at",
        "total_cents",
        "tenant_id",
        "id",
        "version",
        "status",
        "updated_at",
    ]
    assert "payload" not in [f.name for f in statement.event_fields]
    assert len(statement.event_fields) == len(OutboxEvent._meta.concrete_fields) - 1
    assert statement.sql.count("%s") == len(statement.fields) + len(statement.event_fields) + 1
    assert "pg_notify(%s, '')" in statement.sql


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("action", ["confirm", "close"])
def test_in_autocommit_the_statement_is_all_a_transition_sends(action: str) -> None:
    """No ``BEGIN`` / ``COMMIT``: the statement is atomic by itself; the relays are woken
    (the NOTIFY is delivered: it was committed)."""
    order = make({}, status="draft" if action == "confirm" else "confirmed")
    seen: list[tuple[str, bool]] = []

    def record(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        seen.append((sql.split(None, 1)[0].upper(), connection.in_atomic_block))
        return execute(sql, params, many, context)

    listener = listening()
    try:
        with connection.execute_wrapper(record):
            response = transition(action, order)
        assert response.status_code == 200, response.content
        assert seen == [("WITH", False)]
        ready, _, _ = select.select([listener.fileno()], [], [], 5)
        assert ready, "no notification within 5 s"
        assert [n.channel for n in listener.notifies(timeout=1, stop_after=1)] == [NOTIFY_CHANNEL]
    finally:
        listener.close()


def listening() -> Any:
    """A connection of its own LISTENing on the relays' channel (psycopg 3 or 2)."""
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    if not is_psycopg3:
        pytest.skip("psycopg 3's notifies()")
    import psycopg

    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    listener = psycopg.connect(**params, autocommit=True)
    listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
    return listener


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("if_match", "body", "status", "code"),
    [
        ('"7"', {"totalCents": 1}, 412, "version_mismatch"),
        ('"1"', {"totalCents": 1}, 404, "not_found"),  # another order id, below
        ('"2"', {"totalCents": 1}, 409, "invalid_transition"),
        ('"1"', {"totalCents": -1}, 400, "validation_error"),
    ],
)
def test_what_the_statement_does_not_change_the_locked_path_answers(
    if_match: str, body: dict[str, int], status: int, code: str
) -> None:
    order = make({}, status="confirmed" if status == 409 else "draft")
    order_id = uuid.uuid4() if status == 404 else order.id
    before = Order.objects.filter(pk=order.pk).values().get()
    seen: list[tuple[str, bool]] = []

    def record(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        seen.append((sql.split(None, 1)[0].upper(), connection.in_atomic_block))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        response = OrdersClient().confirm(str(order_id), body, if_match=if_match)
    assert_problem(response, status, code)
    if status == 400:  # a body the fast path cannot take is the serializer's, before any write
        assert ("WITH", False) not in seen
    else:  # the statement changed nothing; the locked read, in a transaction, says why
        assert seen[:2] == [("WITH", False), ("SELECT", True)]
    assert Order.objects.filter(pk=order.pk).values().get() == before
    assert not OutboxEvent.objects.filter(type="order.confirmed").exists()


def _receiver(**kwargs: object) -> None:
    pass


@pytest.mark.parametrize(
    ("settings", "headers", "if_match", "body", "connect"),
    [
        pytest.param({}, {"Idempotency-Key": "k"}, '"1"', {"totalCents": 1}, None, id="a-key"),
        pytest.param({}, {}, "*", {"totalCents": 1}, None, id="if-match-star"),
        pytest.param({}, {}, 'W/"0", "1"', {"totalCents": 1}, None, id="two-tags"),
        pytest.param({}, {}, None, {"totalCents": 1}, None, id="no-if-match"),
        pytest.param(
            {"ORDER_RULES": [lambda change: None]},
            {},
            '"1"',
            {"totalCents": 1},
            None,
            id="host-rules",
        ),
        pytest.param(
            {"EVENT_ENRICHERS": ["tests.test_outbox_recording.correlate"]},
            {},
            '"1"',
            {"totalCents": 1},
            None,
            id="enrichers",
        ),
        pytest.param(
            {"CONFIRM_SERIALIZER": "tests.test_transition_fast_path.HostConfirmSerializer"},
            {},
            '"1"',
            {"totalCents": 1},
            None,
            id="host-serializer",
        ),
        pytest.param({}, {}, '"1"', {"totalCents": 1}, post_init, id="post-init-receiver"),
        pytest.param({}, {}, '"1"', {"totalCents": 1}, pre_save, id="pre-save-receiver"),
    ],
)
def test_anything_of_the_hosts_keeps_the_locked_path(
    settings: dict[str, Any],
    headers: dict[str, str],
    if_match: str | None,
    body: dict[str, int],
    connect: Any,
) -> None:
    order = make({})
    if connect is not None:
        connect.connect(_receiver, sender=Order)
    try:
        host = {"REQUIRE_IF_MATCH": False, **settings}
        with override_settings(DJANGO_ORDERS=host), CaptureQueriesContext(connection) as context:
            response = OrdersClient().confirm(
                str(order.id), body, if_match=if_match, headers=headers
            )
    finally:
        if connect is not None:
            connect.disconnect(_receiver, sender=Order)
    assert response.status_code == 200, response.content
    statements = [query["sql"] for query in context.captured_queries]
    assert not any("jsonb_build_object(" in s for s in statements), statements
    assert any("FOR UPDATE" in s for s in statements), statements


@pytest.mark.parametrize("signal", [pre_init, post_init], ids=["pre_init", "post_init"])
@pytest.mark.parametrize("sender", [Order, OutboxEvent], ids=["order", "event"])
def test_a_receiver_of_the_instances_signals_sees_what_the_locked_path_makes(
    signal: Any, sender: Any
) -> None:
    """The locked path makes the order's instance from the row before the change and the
    event's with its payload; the statement would make the order's from the row after and
    the event's without one (the statement writes it). A host's ``pre_init`` /
    ``post_init`` receiver of either model tells them apart, so it keeps the locked path
    (and the create claims its key first)."""
    order = make({})
    seen: list[Any] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        instance = kwargs.get("instance")
        if isinstance(instance, Order):
            seen.append((instance.status, instance.version))
        elif isinstance(instance, OutboxEvent):
            seen.append(instance.payload)
        else:
            seen.append(sender)

    signal.connect(receiver, sender=sender, weak=False, dispatch_uid="init-receiver")
    try:
        assert not services.can_transition_in_one_statement("default")
        assert not services.can_claim_with_writes("default")
        with CaptureQueriesContext(connection) as context:
            response = transition("confirm", order)
    finally:
        signal.disconnect(sender=sender, dispatch_uid="init-receiver")
    assert response.status_code == 200, response.content
    statements = [query["sql"] for query in context.captured_queries]
    assert not any("jsonb_build_object(" in s for s in statements), statements
    assert any("FOR UPDATE" in s for s in statements), statements
    if signal is pre_init:
        assert seen == [sender]
    elif sender is Order:
        assert seen == [("draft", 1)]  # the row before: its instance is then changed
    else:
        assert seen == [response.json()]  # the event made with its payload


def confirm_request(order: Order) -> Any:
    """A confirm of the draft ``order`` for a view called directly: one strong tag, a
    plainly valid body."""
    return APIRequestFactory().patch(
        f"/orders/{order.id}/confirm",
        {"totalCents": 3},
        format="json",
        headers={"If-Match": '"1"', "X-Tenant-Id": "shop-1"},
    )


@pytest.mark.parametrize("override", [None, "apply", "finalize_response", "handler"])
def test_a_subclass_overriding_the_transition_keeps_the_locked_path(override: str | None) -> None:
    attributes: dict[str, Any] = {}
    if override == "apply":
        attributes["apply"] = lambda self, order, data, context: services.confirm_order(
            order, context=context, **data
        )
    elif override == "finalize_response":
        attributes["finalize_response"] = lambda self, *args, **kwargs: super(
            view_class, self
        ).finalize_response(*args, **kwargs)
    elif override == "handler":
        attributes["patch"] = lambda self, request, order_id: self.transition(request, order_id)
    view_class = type("HostConfirm", (views.OrderConfirmView,), attributes)
    order = make({})
    raw = confirm_request(order)
    view = view_class()
    request = view.initialize_request(raw)
    assert view.writes_in_one_statement(request, "default") is (override is None)


def test_a_subclass_saying_no_to_one_statement_gets_the_locked_path() -> None:
    """writes_in_one_statement() is the mixin's hook: a subclass answering no (after asking
    the package's answer) gets the locked transition, not the statement made anyway."""

    class HostConfirm(views.OrderConfirmView):
        def writes_in_one_statement(self, request: Any, using: str) -> bool:
            super().writes_in_one_statement(request, using)
            return False

    order = make({})
    raw = confirm_request(order)
    with CaptureQueriesContext(connection) as context:
        response = HostConfirm.as_view()(raw, order_id=str(order.id))
    assert response.status_code == 200, response.content
    statements = [query["sql"] for query in context.captured_queries]
    assert not any("jsonb_build_object(" in s for s in statements), statements
    assert any("FOR UPDATE" in s for s in statements), statements


def test_the_tag_is_parsed_and_the_body_validated_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """writes_in_one_statement() finds the statement's inputs when the mixin asks it, and
    transition() makes the statement with them, parsing and validating nothing again."""
    calls: list[str] = []
    for name in ("if_match_version", "plainly_valid_transition"):
        original = getattr(views, name)

        def counted(*args: Any, name: str = name, original: Any = original) -> Any:
            calls.append(name)
            return original(*args)

        monkeypatch.setattr(views, name, counted)
    order = make({})
    with CaptureQueriesContext(connection) as context:
        response = OrdersClient().confirm(str(order.id), {"totalCents": 1}, if_match='"1"')
    assert response.status_code == 200, response.content
    assert any("jsonb_build_object(" in query["sql"] for query in context.captured_queries)
    assert calls == ["if_match_version", "plainly_valid_transition"]


def transition_heard(action: str, order: Order, receiver: Callable[..., None]) -> Any:
    """``action`` made on ``order`` in one statement, ``receiver`` connected to its signal."""
    signal = signals.order_confirmed if action == "confirm" else signals.order_closed
    signal.connect(receiver, sender=Order, weak=False, dispatch_uid="fast-path")
    try:
        with CaptureQueriesContext(connection) as context:
            response = transition(action, order)
    finally:
        signal.disconnect(sender=Order, dispatch_uid="fast-path")
    assert "jsonb_build_object(" in context.captured_queries[0]["sql"]
    return response


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("action", ["confirm", "close"])
def test_the_signal_is_sent_once_the_change_is_committed(action: str) -> None:
    order = make({}, status="draft" if action == "confirm" else "confirmed")
    sent: list[tuple[dict[str, Any], bool, dict[str, Any]]] = []

    def receiver(order: Order, **kwargs: object) -> None:
        stored = Order.objects.get(pk=order.pk).to_dict()
        sent.append((order.to_dict(), connection.in_atomic_block, stored))

    response = transition_heard(action, order, receiver)
    assert response.status_code == 200
    # Sent once, outside any transaction, with the order as committed and answered.
    assert sent == [(response.json(), False, response.json())]


@pytest.mark.django_db(transaction=True)
def test_a_change_committed_after_the_instant_was_taken_is_not_overtaken_in_time() -> None:
    """The statement's instant is taken before it runs; a change committed in between (a
    confirm, by a client that guessed the next version) must not leave the later version
    with the earlier time — closedAt before confirmedAt, the close event's ``time``
    before the confirm's. The locked path takes its instant with the row locked."""
    order = make({})
    paused, resume = threading.Event(), threading.Event()
    answers: list[Any] = []

    def pause_before_the_statement(execute: Any, sql_text: str, *args: Any) -> Any:
        if "jsonb_build_object(" in sql_text and not paused.is_set():
            paused.set()
            assert resume.wait(30)
        return execute(sql_text, *args)

    def close_holding_version_2() -> None:
        try:
            with connection.execute_wrapper(pause_before_the_statement):
                answers.append(OrdersClient().close_order(str(order.id), if_match='"2"'))
        finally:
            connection.close()

    closer = threading.Thread(target=close_holding_version_2)
    closer.start()
    try:
        assert paused.wait(30)
        # The close has taken its instant; a confirm is made and committed after it.
        confirmed = transition("confirm", order)
        assert confirmed.status_code == 200
    finally:
        resume.set()
        closer.join(30)

    assert [answer.status_code for answer in answers] == [200]
    closed = Order.objects.get(pk=order.pk)
    assert closed.version == 3
    assert closed.closed_at >= closed.confirmed_at
    assert closed.updated_at >= dt.datetime.fromisoformat(confirmed.json()["updatedAt"])
    times = list(
        OutboxEvent.objects.filter(aggregate_id=str(order.id))
        .order_by("aggregate_version")
        .values_list("created_at", flat=True)
    )
    assert times == sorted(times), times


@pytest.mark.parametrize("action", ["confirm", "close"])
def test_the_largest_version_in_if_match_is_a_412_not_a_500(action: str) -> None:
    """A version has a next one only below 2**31 - 1: the tag of the largest one, sent by
    a client to an order at any other version, is a 412 (found in review: the statement
    setting version 2**31 failed with "integer out of range" whatever the row)."""
    order = make({}, status="draft" if action == "confirm" else "confirmed")
    api = OrdersClient()
    tag = f'"{2**31 - 1}"'
    if action == "confirm":
        response = api.confirm(str(order.id), {"totalCents": 1}, if_match=tag)
    else:
        response = api.close_order(str(order.id), if_match=tag)
    assert_problem(response, 412, "version_mismatch")
    assert Order.objects.get(pk=order.pk).version == order.version


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("action", ["confirm", "close"])
def test_the_answer_is_made_before_a_receiver_gets_the_instance(action: str) -> None:
    """The locked path makes its answer before its commit sends the signal; a receiver
    changing the instance it is sent (its own bookkeeping) changes neither answer (found
    in review: the statement's signal was sent before its answer was made)."""
    order = make({"a": "b"}, status="draft" if action == "confirm" else "confirmed")

    def receiver(order: Order, **kwargs: object) -> None:
        order.metadata["seen"] = "yes"
        order.status = "seen"

    response = transition_heard(action, order, receiver)
    assert response.status_code == 200
    assert response.json() == Order.objects.get(pk=order.pk).to_dict()
    assert response.json()["metadata"] == {"a": "b"}
