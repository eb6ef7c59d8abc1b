"""``django_orders.sql``: the cached raw INSERTs of the create path (benchmarks Findings 3-4)
and the transitions' locked read and one-statement write (Finding 10).

The rows they write are the ORM's, field for field, and the instances they read are the
ORM's; hosts listening to ``post_save`` still hear it; and without client-side binding
(psycopg 3's ``server_side_binding``) or off PostgreSQL, the statements go one per
``execute``.
"""

from __future__ import annotations

import select
from typing import Any

import pytest
from django.db import DatabaseError, connection, models, transaction
from django.db.models.signals import post_save
from django.test.utils import CaptureQueriesContext, isolate_apps
from django.utils import timezone

from django_orders import services, sql
from django_orders.models import AbstractOrder, Order, OutboxEvent
from django_orders.outbox.recording import NOTIFY_CHANNEL, insert_with_notify
from tests.orders_api import OrdersClient

pytestmark = pytest.mark.django_db


def test_a_created_order_reads_back_as_written() -> None:
    order = services.create_order("shop-1", total_cents=7, currency="EUR", metadata={"b": "é"})
    stored = Order.objects.get(pk=order.id)
    assert stored.to_dict() == order.to_dict()
    event = OutboxEvent.objects.get(aggregate_id=order.id)
    assert event.payload == order.to_dict()
    assert (event.status, event.attempts, event.created_at) == ("pending", 0, order.updated_at)
    assert order._state.adding is False
    assert order._state.db == "default"


def test_order_event_and_notify_share_one_execute_on_postgres() -> None:
    with CaptureQueriesContext(connection) as captured:
        services.create_order("shop-1")
    writes = [q["sql"] for q in captured.captured_queries if "INSERT" in q["sql"]]
    if connection.vendor == "postgresql":
        (statement,) = writes
        assert statement.count("INSERT INTO") == 2
        assert statement.rstrip().endswith("NOTIFY django_orders_outbox")
    else:
        assert len(writes) == 2


@pytest.mark.postgres
def test_with_server_side_binding_the_statements_go_one_by_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    options = {**connection.settings_dict.get("OPTIONS", {}), "server_side_binding": True}
    monkeypatch.setitem(connection.settings_dict, "OPTIONS", options)
    with CaptureQueriesContext(connection) as captured:
        order = services.create_order("shop-1")
    statements = [q["sql"] for q in captured.captured_queries]
    assert sum(s.startswith("INSERT INTO") for s in statements) == 2
    assert "NOTIFY django_orders_outbox" in statements
    assert not any(";" in s for s in statements)
    assert OutboxEvent.objects.filter(aggregate_id=order.id).exists()


def test_a_post_save_receiver_still_hears_the_order_and_its_event() -> None:
    heard: list[tuple[type, bool]] = []

    def receiver(sender: type, created: bool, **kwargs: Any) -> None:
        heard.append((sender, created))

    post_save.connect(receiver, sender=Order)
    post_save.connect(receiver, sender=OutboxEvent)
    try:
        services.create_order("shop-1")
    finally:
        post_save.disconnect(receiver, sender=Order)
        post_save.disconnect(receiver, sender=OutboxEvent)
    assert heard == [(Order, True), (OutboxEvent, True)]


def test_the_locked_read_gives_the_orms_instance() -> None:
    created = services.create_order("shop-1", total_cents=5, metadata={"z": "1", "a": "é"})
    with transaction.atomic():
        locked = sql.fetch_one("default", Order, "shop-1", created.id, for_update=True)
    orm = Order.objects.get(pk=created.id)
    assert locked is not None
    assert {f.attname: getattr(locked, f.attname) for f in Order._meta.concrete_fields} == {
        f.attname: getattr(orm, f.attname) for f in Order._meta.concrete_fields
    }
    assert (locked._state.adding, locked._state.db) == (False, "default")
    assert sql.fetch_one("default", Order, "shop-2", created.id) is None


def test_a_transition_writes_the_order_and_its_event_as_the_orm_would() -> None:
    order = services.create_order("shop-1")
    with CaptureQueriesContext(connection) as captured, transaction.atomic():
        confirmed = services.confirm_order(
            services.get_order_for_update("shop-1", order.id), total_cents=9
        )
    assert Order.objects.get(pk=order.id).to_dict() == confirmed.to_dict()
    event = OutboxEvent.objects.get(aggregate_id=order.id, type="order.confirmed")
    assert (event.aggregate_version, event.payload) == (2, confirmed.to_dict())
    assert event._state.adding is False
    statements = [
        q["sql"]
        for q in captured.captured_queries
        if not q["sql"].startswith(("SAVEPOINT", "RELEASE"))
    ]
    if connection.vendor == "postgresql":
        assert "FOR UPDATE" in statements[0]
        (write,) = statements[1:]
        assert write.startswith("WITH changed AS (UPDATE")
        assert "INSERT INTO" in write
        assert "pg_notify" in write
    else:
        assert [s.split()[0] for s in statements[1:]] == ["UPDATE", "INSERT"]


def test_a_transition_of_a_row_gone_raises_and_writes_no_event() -> None:
    order = services.create_order("shop-1")

    def confirm_a_deleted_order() -> None:
        with transaction.atomic():
            locked = services.get_order_for_update("shop-1", order.id)
            Order.objects.filter(pk=order.id).delete()
            services.confirm_order(locked, total_cents=1)

    with pytest.raises(DatabaseError):
        confirm_a_deleted_order()
    assert not OutboxEvent.objects.filter(type="order.confirmed").exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_committed_transition_notifies_the_listeners() -> None:
    # Listens with psycopg 3 itself; ORDERS_PG_DRIVER=psycopg2 hides it (tests/settings.py).
    psycopg = pytest.importorskip("psycopg", reason="listens with psycopg 3, hidden on psycopg2")

    order = services.create_order("shop-1")
    settings = connection.settings_dict
    listener = psycopg.connect(
        host=settings["HOST"],
        port=settings["PORT"] or 5432,
        user=settings["USER"],
        dbname=settings["NAME"],
        autocommit=True,
    )
    try:
        listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
        with transaction.atomic():
            services.confirm_order(services.get_order_for_update("shop-1", order.id), total_cents=3)
        # Delivered on commit: wait for the socket to have it (bounded), then read it.
        ready, _, _ = select.select([listener.fileno()], [], [], 5)
        assert ready, "no notification within 5 s"
        notices = list(listener.notifies(timeout=1, stop_after=1))
    finally:
        listener.close()
    assert [n.channel for n in notices] == [NOTIFY_CHANNEL]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_with_server_side_binding_the_transitions_and_the_page_work(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from django.db.backends.postgresql import base

    if not base.is_psycopg3:  # psycopg2: the backend has no ServerBindingCursor to import
        pytest.skip("server_side_binding is psycopg 3's")
    ServerBindingCursor = base.ServerBindingCursor
    options = {**connection.settings_dict.get("OPTIONS", {}), "server_side_binding": True}
    monkeypatch.setitem(connection.settings_dict, "OPTIONS", options)
    connection.close()  # the cursor class is chosen when the connection opens
    try:
        with connection.cursor() as cursor:
            assert isinstance(cursor.cursor, ServerBindingCursor)
        transitions_and_a_page()
    finally:
        connection.close()


def transitions_and_a_page() -> None:
    # The create's claim guarding its inserts (Finding 14), its parameters typed by the
    # server from their target columns, then its replay.
    api = OrdersClient()
    created = api.create({"totalCents": 2, "metadata": {"k": "v"}}, key="server-side")
    assert created.status_code == 201
    assert api.create({"totalCents": 2, "metadata": {"k": "v"}}, key="server-side").content == (
        created.content
    )
    assert Order.objects.get(pk=created.json()["id"]).to_dict() == created.json()
    order = services.create_order("shop-1", metadata={"k": "v"})
    with transaction.atomic():
        services.confirm_order(services.get_order_for_update("shop-1", order.id), total_cents=4)
    with transaction.atomic():
        closed = services.close_order(services.get_order_for_update("shop-1", order.id))
    page = sql.fetch_page(
        "default", Order, {"tenant_id": "shop-1"}, ("-created_at", "-id"), None, 5
    )
    assert [o.to_dict() for o in page] == [closed.to_dict(), created.json()]
    types = list(
        OutboxEvent.objects.filter(aggregate_id=order.id)
        .order_by("aggregate_version")
        .values_list("type", flat=True)
    )
    assert types == ["order.created", "order.confirmed", "order.closed"]
    # The transitions in one conditional statement (Finding 16), the event's columns typed
    # by the server from their targets, the payload built from the changed row.
    order_id = created.json()["id"]
    confirmed = api.confirm(order_id, {"totalCents": 6})
    assert confirmed.status_code == 200, confirmed.content
    closed_response = api.close_order(order_id)
    assert closed_response.status_code == 200, closed_response.content
    assert Order.objects.get(pk=order_id).to_dict() == closed_response.json()
    payloads = list(
        OutboxEvent.objects.filter(aggregate_id=order_id)
        .order_by("aggregate_version")
        .values_list("payload", flat=True)
    )
    assert payloads[1:] == [confirmed.json(), closed_response.json()]


def test_a_host_save_override_still_runs_on_a_transition(monkeypatch: pytest.MonkeyPatch) -> None:
    # Before the one-statement write (Finding 10), confirm and close called
    # order.save(update_fields=…): a model's own save() ran, as its post_save receivers do.
    saved: list[tuple[str, ...]] = []
    orm_save = Order.save

    def save(self: Order, *args: Any, **kwargs: Any) -> None:
        saved.append(tuple(kwargs.get("update_fields") or ()))
        orm_save(self, *args, **kwargs)

    order = services.create_order("shop-1")
    monkeypatch.setattr(Order, "save", save)
    with transaction.atomic():
        services.confirm_order(services.get_order_for_update("shop-1", order.id), total_cents=2)
    with transaction.atomic():
        services.close_order(services.get_order_for_update("shop-1", order.id))
    assert [set(fields) >= {"status", "version"} for fields in saved] == [True, True]
    events = OutboxEvent.objects.filter(aggregate_id=order.id).order_by("aggregate_version")
    assert [e.type for e in events] == ["order.created", "order.confirmed", "order.closed"]


def test_a_host_save_override_runs_on_create_too(monkeypatch: pytest.MonkeyPatch) -> None:
    saved: list[bool] = []
    orm_save = Order.save

    def save(self: Order, *args: Any, **kwargs: Any) -> None:
        saved.append(bool(kwargs.get("force_insert")))
        orm_save(self, *args, **kwargs)

    monkeypatch.setattr(Order, "save", save)
    order = services.create_order("shop-1")

    assert saved == [True]
    assert Order.objects.filter(pk=order.pk).exists()
    events = OutboxEvent.objects.filter(aggregate_id=order.id)
    assert [e.type for e in events] == ["order.created"]


class _Host(str):
    """A str subclass (as a TextChoices member is)."""


@pytest.mark.parametrize("adding", [True, False])
def test_save_params_are_what_the_fields_make_of_the_values(adding: bool) -> None:
    order = Order(
        tenant_id=_Host("shop-1"),
        total_cents=True,  # not an int: the field's int() makes it 1
        currency="EUR",
        metadata={"a": "b"},
    )
    order.status = Order.Status.DRAFT
    order.id = str(order.id)  # a string: the field makes it a UUID
    event = OutboxEvent(
        tenant_id="shop-1",
        aggregate_type="order",
        aggregate_id="x",
        aggregate_version=1,
        type="order.created",
        payload=[1, 2],
        extensions={},
    )
    event.leased_until = None
    for obj in (order, event):
        fields = tuple(type(obj)._meta.concrete_fields)
        fast = sql.save_params(connection, obj, fields, adding=adding)
        orm = [f.get_db_prep_save(f.pre_save(obj, adding), connection) for f in fields]
        assert [_comparable(v) for v in fast] == [_comparable(v) for v in orm]
        assert [type(v) for v in fast] == [type(v) for v in orm]
        # The builder's fields carry the adapters made with its statement: the same values.
        _, written = sql.insert_statement(connection, type(obj))
        assert written == fields
        built = sql.save_params(connection, obj, written, adding=adding)
        assert [_comparable(v) for v in built] == [_comparable(v) for v in orm]


def _comparable(value: Any) -> Any:
    """A driver's JSON wrapper by what it wraps (they do not compare by value)."""
    for wrapped in ("obj", "adapted"):  # psycopg 3's Jsonb, psycopg2's Json
        if hasattr(value, wrapped):
            return type(value), getattr(value, wrapped)
    return value


@isolate_apps("django_orders")
def test_a_model_whose_save_fills_a_field_is_told_apart() -> None:
    """A field that saving fills (``auto_now_add``, a ``pre_save()`` of its own) keeps the
    idempotent create off the path that renders its response before the insert (found in
    review: a host's ``auto_now_add`` field showed ``null`` in the 201 and its replays)."""

    class Stamped(AbstractOrder):
        stamped_at = models.DateTimeField(auto_now_add=True)

        class Meta(AbstractOrder.Meta):
            app_label = "django_orders"

    class Slug(models.SlugField):
        def pre_save(self, model_instance: Any, add: bool) -> Any:
            return "made-on-save"

    class Slugged(AbstractOrder):
        slug = Slug()

        class Meta(AbstractOrder.Meta):
            app_label = "django_orders"

    class Plain(AbstractOrder):
        placed_at = models.DateTimeField(null=True)
        channel = models.CharField(max_length=16, default="web")

        class Meta(AbstractOrder.Meta):
            app_label = "django_orders"

    assert not sql.fills_fields_on_save(Order)
    assert not sql.fills_fields_on_save(OutboxEvent)
    assert not sql.fills_fields_on_save(Plain)
    assert sql.fills_fields_on_save(Stamped)
    assert sql.fills_fields_on_save(Slugged)


@pytest.mark.postgres  # the table made inside the test's transaction
@isolate_apps("django_orders")
def test_a_field_the_database_fills_is_inserted_as_the_orm_inserts_it() -> None:
    """A host field with ``db_default`` and no ``default`` holds a ``DatabaseDefault`` on a
    new instance, which the ORM writes as ``DEFAULT``: such a model goes through
    ``save()`` (found in review: the raw insert sent the object as a parameter, a 500)."""

    class Ranked(AbstractOrder):
        rank = models.IntegerField(db_default=7)

        class Meta(AbstractOrder.Meta):
            app_label = "django_orders"

    assert not sql.can_insert_raw(Ranked)
    assert sql.can_insert_raw(Order, OutboxEvent)  # its extensions: db_default and default
    with connection.schema_editor() as editor:
        editor.create_model(Ranked)
    now = timezone.now()
    insert_with_notify(
        "default", [Ranked(tenant_id="shop-1", currency="EUR", created_at=now, updated_at=now)]
    )
    assert list(Ranked._default_manager.values_list("rank", flat=True)) == [7]
