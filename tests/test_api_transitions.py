"""Confirm and close, with ``If-Match`` and the order of checks (docs/api/confirm-order.md,
docs/api/close-order.md)."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from django.db import DatabaseError, connection, transaction
from django.test import override_settings

from django_orders import services, signals
from django_orders.models import IdempotencyKey, Order, OutboxEvent
from django_orders.serializers import READ_ONLY_FIELDS
from tests.orders_api import OrdersClient, assert_problem, failing_trigger, sqlite_write_lock_held

pytestmark = pytest.mark.django_db


@pytest.fixture
def draft() -> Order:
    return services.create_order("shop-1")


@pytest.fixture
def confirmed(api: OrdersClient) -> Order:
    order = services.create_order("shop-1")
    assert api.confirm(str(order.id), {"totalCents": 700}).status_code == 200
    return Order.objects.get(pk=order.id)


# -- confirm ------------------------------------------------------------------------------


def test_confirm_moves_a_draft_to_confirmed(api: OrdersClient, draft: Order) -> None:
    response = api.confirm(str(draft.id), {"totalCents": 1999}, if_match='"1"')

    assert response.status_code == 200
    assert response["ETag"] == '"2"'
    body = response.json()
    draft.refresh_from_db()
    assert body == draft.to_dict()
    assert body["status"] == "confirmed"
    assert body["version"] == 2
    assert body["totalCents"] == 1999
    assert body["confirmedAt"] is not None
    assert body["updatedAt"] == body["confirmedAt"]
    event = OutboxEvent.objects.get(type="order.confirmed")
    assert event.aggregate_version == 2
    assert event.payload == body


@pytest.mark.parametrize("if_match", ['"1"', "1", '"5", "1"', "*", ' "1" ', '"0",1'])
def test_the_accepted_if_match_forms(api: OrdersClient, draft: Order, if_match: str) -> None:
    response = api.confirm(str(draft.id), {"totalCents": 1}, if_match=if_match)
    assert response.status_code == 200, response.content


def test_confirm_without_if_match_is_428(api: OrdersClient, draft: Order) -> None:
    assert_problem(
        api.confirm(str(draft.id), {"totalCents": 1}, if_match=None), 428, "precondition_required"
    )


@override_settings(DJANGO_ORDERS={"REQUIRE_IF_MATCH": False})
def test_if_match_can_be_made_optional(api: OrdersClient, draft: Order) -> None:
    assert api.confirm(str(draft.id), {"totalCents": 1}, if_match=None).status_code == 200


@pytest.mark.parametrize("if_match", ["abc", '"1', "", "W/1", '"1" "2"', "1.0", "-1"])
def test_an_unparseable_if_match_is_400(api: OrdersClient, draft: Order, if_match: str) -> None:
    assert_problem(
        api.confirm(str(draft.id), {"totalCents": 1}, if_match=if_match), 400, "invalid_if_match"
    )


@pytest.mark.parametrize("if_match", ['"2"', 'W/"1"', '"2", W/"1"', "0"])
def test_a_non_matching_if_match_is_412_with_the_current_version(
    api: OrdersClient, draft: Order, if_match: str
) -> None:
    response = api.confirm(str(draft.id), {"totalCents": 1}, if_match=if_match)

    problem = assert_problem(response, 412, "version_mismatch")
    assert problem["currentVersion"] == 1
    assert response["ETag"] == '"1"'
    draft.refresh_from_db()
    assert draft.version == 1
    assert not OutboxEvent.objects.filter(type="order.confirmed").exists()


@pytest.mark.parametrize(
    ("if_match", "says"),
    [
        ('W/"1"', 'the weak tag W/"1" never matches'),
        ('"2", W/"1"', 'the weak tag W/"1" never matches'),
        ('"2"', "its current version is 1"),
        ('W/"2"', "its current version is 1"),
    ],
)
def test_the_412_detail_says_why_a_weak_tag_of_the_current_version_fails(
    api: OrdersClient, draft: Order, if_match: str, says: str
) -> None:
    """A weak tag never matches If-Match; when it names the current version, "the resource
    has changed" would be false: the detail says the tag is weak and what to send."""
    response = api.confirm(str(draft.id), {"totalCents": 1}, if_match=if_match)

    problem = assert_problem(response, 412, "version_mismatch")
    assert says in problem["detail"]
    if "weak" in says:
        assert "has changed" not in problem["detail"]
        assert 'send "1"' in problem["detail"]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"totalCents": None},
        {"totalCents": -1},
        {"totalCents": "5"},
        {"totalCents": 2**63},
        {"totalCents": 1, "currency": "EUR"},
        {"totalCents": 1, "status": "closed"},
        [],
    ],
)
def test_an_invalid_confirm_body_is_400(api: OrdersClient, draft: Order, body: object) -> None:
    assert_problem(api.confirm(str(draft.id), body), 400, "validation_error")
    draft.refresh_from_db()
    assert draft.status == "draft"


def test_confirming_a_confirmed_order_is_409_invalid_transition(
    api: OrdersClient, confirmed: Order
) -> None:
    response = api.confirm(str(confirmed.id), {"totalCents": 1}, if_match='"2"')
    problem = assert_problem(response, 409, "invalid_transition")
    assert problem["currentStatus"] == "confirmed"
    assert problem["detail"] == "An order that is confirmed cannot become confirmed."


# -- close --------------------------------------------------------------------------------


def test_close_moves_a_confirmed_order_to_closed(api: OrdersClient, confirmed: Order) -> None:
    response = api.close_order(str(confirmed.id), if_match='"2"')

    assert response.status_code == 200
    assert response["ETag"] == '"3"'
    body = response.json()
    assert body["status"] == "closed"
    assert body["version"] == 3
    assert body["totalCents"] == 700
    assert body["closedAt"] is not None
    event = OutboxEvent.objects.get(type="order.closed")
    assert event.aggregate_version == 3
    assert event.payload == body
    assert list(
        OutboxEvent.objects.filter(aggregate_id=confirmed.id).values_list("type", flat=True)
    ) == ["order.created", "order.confirmed", "order.closed"]


@pytest.mark.parametrize("raw", ["", "{}"])
def test_close_takes_an_empty_body(api: OrdersClient, confirmed: Order, raw: str) -> None:
    response = api.call(
        "POST", f"/orders/{confirmed.id}/close/", raw=raw, headers={"If-Match": '"2"'}
    )
    assert response.status_code == 200


def test_close_refuses_members_in_its_body(api: OrdersClient, confirmed: Order) -> None:
    problem = assert_problem(
        api.close_order(str(confirmed.id), {"totalCents": 1}), 400, "validation_error"
    )
    assert problem["errors"] == {"totalCents": ["Unknown field."]}


def test_closing_a_draft_is_409_invalid_transition(api: OrdersClient, draft: Order) -> None:
    problem = assert_problem(
        api.close_order(str(draft.id), if_match='"1"'), 409, "invalid_transition"
    )
    assert problem["currentStatus"] == "draft"
    draft.refresh_from_db()
    assert draft.version == 1


def test_closing_a_closed_order_is_409(api: OrdersClient, confirmed: Order) -> None:
    assert api.close_order(str(confirmed.id), if_match='"2"').status_code == 200
    problem = assert_problem(
        api.close_order(str(confirmed.id), if_match='"3"'), 409, "invalid_transition"
    )
    assert problem["currentStatus"] == "closed"


@pytest.mark.parametrize(
    ("if_match", "status", "code"),
    [
        (None, 428, "precondition_required"),
        ("x", 400, "invalid_if_match"),
        ('"1"', 412, "version_mismatch"),
    ],
)
def test_close_has_the_if_match_rules_of_confirm(
    api: OrdersClient, confirmed: Order, if_match: str | None, status: int, code: str
) -> None:
    assert_problem(api.close_order(str(confirmed.id), if_match=if_match), status, code)
    confirmed.refresh_from_db()
    assert confirmed.status == "confirmed"


# -- the order of checks (docs/api/confirm-order.md) -----------------------------------------------


def test_order_of_checks_tenant_first(draft: Order) -> None:
    anonymous = OrdersClient(tenant=None)
    response = anonymous.confirm(
        str(draft.id), {"x": 1}, if_match="junk", headers={"Idempotency-Key": ""}
    )
    assert_problem(response, 400, "missing_tenant")


def test_order_of_checks_idempotency_before_404(api: OrdersClient) -> None:
    response = api.confirm(str(uuid.uuid4()), {}, headers={"Idempotency-Key": "x" * 300})
    assert_problem(response, 400, "invalid_idempotency_key")


def test_order_of_checks_json_before_404(api: OrdersClient) -> None:
    response = api.call("PATCH", f"/orders/{uuid.uuid4()}/confirm", raw="{")
    assert_problem(response, 400, "invalid_json")


@pytest.mark.parametrize("order_id", [lambda: str(uuid.uuid4()), lambda: "nope"])
def test_order_of_checks_404_before_if_match(api: OrdersClient, order_id: object) -> None:
    oid = order_id()  # type: ignore[operator]
    assert_problem(api.confirm(oid, {"x": 1}, if_match=None), 404, "not_found")
    assert_problem(api.close_order(oid, if_match="junk"), 404, "not_found")


def test_another_tenants_order_is_404(draft: Order) -> None:
    other = OrdersClient(tenant="shop-2")
    assert_problem(other.confirm(str(draft.id), {"totalCents": 1}), 404, "not_found")
    draft.refresh_from_db()
    assert draft.status == "draft"


def test_order_of_checks_428_then_400_then_412_before_the_body(
    api: OrdersClient, draft: Order
) -> None:
    oid = str(draft.id)
    assert_problem(api.confirm(oid, {"bad": 1}, if_match=None), 428, "precondition_required")
    assert_problem(api.confirm(oid, {"bad": 1}, if_match="junk"), 400, "invalid_if_match")
    assert_problem(api.confirm(oid, {"bad": 1}, if_match='"9"'), 412, "version_mismatch")
    assert_problem(api.confirm(oid, {"bad": 1}, if_match='"1"'), 400, "validation_error")


def test_order_of_checks_body_before_transition(api: OrdersClient, confirmed: Order) -> None:
    oid = str(confirmed.id)
    assert_problem(api.confirm(oid, {"bad": 1}, if_match='"2"'), 400, "validation_error")
    assert_problem(api.confirm(oid, {"totalCents": 1}, if_match='"2"'), 409, "invalid_transition")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "confirm"),
        ("POST", "confirm"),
        ("PUT", "confirm"),
        ("GET", "close"),
        ("PATCH", "close"),
        ("DELETE", "close"),
    ],
)
def test_other_methods_are_405(api: OrdersClient, draft: Order, method: str, path: str) -> None:
    response = api.call(method, f"/orders/{draft.id}/{path}", {}, headers={"If-Match": '"1"'})
    assert_problem(response, 405, "method_not_allowed")


# -- the change and its event commit together or not at all (docs/api/confirm-order.md, docs/api/clo


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("event_type", ["order.confirmed", "order.closed"])
@pytest.mark.parametrize("locked", [True, False], ids=["locked", "one-statement"])
def test_a_failure_after_the_event_is_written_keeps_neither_the_change_nor_the_event(
    event_type: str, locked: bool
) -> None:
    api = OrdersClient()
    order = services.create_order("shop-1")
    if event_type == "order.closed":
        with transaction.atomic():
            services.confirm_order(services.get_order_for_update("shop-1", order.id), total_cents=7)

    def send() -> object:
        # Locked: a key and "*"; else, on PostgreSQL, the one conditional statement in
        # autocommit (docs/benchmarks.md, Finding 16), which fails as a whole.
        headers = {"Idempotency-Key": f"fail-{event_type}"} if locked else {}
        if_match = "*" if locked else '"1"' if event_type == "order.confirmed" else '"2"'
        if event_type == "order.confirmed":
            return api.confirm(str(order.id), {"totalCents": 9}, if_match=if_match, headers=headers)
        return api.close_order(str(order.id), if_match=if_match, headers=headers)

    before = Order.objects.filter(pk=order.id).values().get()
    sent: list[object] = []
    signal = signals.order_confirmed if event_type == "order.confirmed" else signals.order_closed
    signal.connect(sent.append, sender=Order, weak=False, dispatch_uid="audit")
    try:
        # The trigger fires once the event row is in: the order row was updated before it.
        trigger = failing_trigger(
            "django_orders_outbox_event", "INSERT", f"NEW.type = '{event_type}'"
        )
        with trigger, pytest.raises(DatabaseError):
            send()
    finally:
        signal.disconnect(sender=Order, dispatch_uid="audit")

    assert Order.objects.filter(pk=order.id).values().get() == before
    assert not OutboxEvent.objects.filter(type=event_type).exists()
    assert not IdempotencyKey.objects.exists()
    assert sent == []
    # Nothing was kept, so the very same request (same key) now succeeds.
    response = send()
    assert response.status_code == 200  # type: ignore[attr-defined]
    assert "Idempotent-Replayed" not in response  # type: ignore[operator]
    assert OutboxEvent.objects.filter(type=event_type).count() == 1


# -- another tenant's order (docs/guide/tenancy.md) ------------------------------------------------


@pytest.mark.parametrize("action", ["confirm", "close"])
@pytest.mark.parametrize("if_match", ['"1"', None, "junk"])
def test_another_tenants_order_answers_exactly_like_a_missing_one(
    draft: Order, action: str, if_match: str | None
) -> None:
    other = OrdersClient(tenant="shop-2")

    def send(order_id: str) -> object:
        if action == "confirm":
            return other.confirm(order_id, {"totalCents": 1}, if_match=if_match)
        return other.close_order(order_id, if_match=if_match)

    foreign, missing = send(str(draft.id)), send(str(uuid.uuid4()))
    assert_problem(foreign, 404, "not_found")
    assert foreign.content == missing.content  # type: ignore[attr-defined]
    assert dict(foreign.headers) == dict(missing.headers)  # type: ignore[attr-defined]
    assert Order.objects.get(pk=draft.id).version == 1


# -- every body refuses the order's read-only members and unknown ones (docs/api/README.md) --


@pytest.mark.parametrize("action", ["create", "confirm", "close"])
@pytest.mark.parametrize(
    ("field", "message"),
    [
        *((name, "This field is read-only.") for name in sorted(READ_ONLY_FIELDS)),
        ("colour", "Unknown field."),
        ("total_cents", "Unknown field."),
        ("tenant_id", "Unknown field."),
    ],
)
def test_read_only_and_unknown_members_are_400_in_every_body(
    api: OrdersClient, draft: Order, confirmed: Order, action: str, field: str, message: str
) -> None:
    value = "x"
    if action == "create":
        response = api.create({field: value})
    elif action == "confirm":
        response = api.confirm(str(draft.id), {"totalCents": 1, field: value})
    else:
        response = api.close_order(str(confirmed.id), {field: value})

    problem = assert_problem(response, 400, "validation_error")
    assert problem["errors"] == {field: [message]}
    assert Order.objects.count() == 2
    assert Order.objects.get(pk=draft.id).status == "draft"
    assert Order.objects.get(pk=confirmed.id).status == "confirmed"
    assert not IdempotencyKey.objects.exists()


def test_the_read_only_members_are_the_order_documents_other_members() -> None:
    # If the order document grows a member, it is refused in bodies unless writable.
    writable = {"totalCents", "currency", "metadata"}
    assert set(services.create_order("t").to_dict()) == READ_ONLY_FIELDS | writable


def test_order_of_checks_for_close_428_400_412_body_then_transition(
    api: OrdersClient, draft: Order
) -> None:
    # On a draft, so that every step that passes would end in a 409.
    oid = str(draft.id)
    bad = {"reason": "x"}
    assert_problem(api.close_order(oid, bad, if_match=None), 428, "precondition_required")
    assert_problem(api.close_order(oid, bad, if_match="junk"), 400, "invalid_if_match")
    assert_problem(api.close_order(oid, bad, if_match='"9"'), 412, "version_mismatch")
    assert_problem(api.close_order(oid, bad, if_match='"1"'), 400, "validation_error")
    assert_problem(api.close_order(oid, {}, if_match='"1"'), 409, "invalid_transition")
    assert Order.objects.get(pk=draft.id).version == 1


# -- losing to a concurrent transaction: 409 concurrent_conflict, never a 500 ------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("transition", ["confirm", "close"])
def test_a_lock_timeout_on_the_order_is_409_and_keeps_nothing(
    api: OrdersClient, transition: str
) -> None:
    """The host's ``lock_timeout`` ends the wait for the order's row lock (another
    transaction holds it): 409 with ``Retry-After``, nothing applied, the key not stored,
    and the same request succeeds once the lock is gone."""
    order = services.create_order("shop-1")
    if transition == "close":
        assert api.confirm(str(order.id), {"totalCents": 100}).status_code == 200
        order.refresh_from_db()
    before = (order.status, order.version)
    events_before = OutboxEvent.objects.filter(aggregate_id=order.id).count()

    def send() -> Any:
        headers = {"Idempotency-Key": f"k-lock-{transition}"}
        if transition == "confirm":
            return api.confirm(str(order.id), {"totalCents": 100}, headers=headers)
        return api.close_order(str(order.id), headers=headers)

    other = connection.copy()
    other.set_autocommit(False)
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT 1 FROM django_orders_order WHERE id = %s FOR UPDATE", [order.id])
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '200ms'")
        try:
            response = send()
        finally:
            with connection.cursor() as cursor:
                cursor.execute("RESET lock_timeout")
    finally:
        other.rollback()
        other.close()
    assert_problem(response, 409, "concurrent_conflict")
    assert response["Retry-After"] == "1"
    order.refresh_from_db()
    assert (order.status, order.version) == before
    assert not IdempotencyKey.objects.filter(key=f"k-lock-{transition}").exists()
    assert OutboxEvent.objects.filter(aggregate_id=order.id).count() == events_before

    retried = send()
    assert retried.status_code == 200, retried.content


@pytest.mark.django_db(transaction=True)
def test_sqlite_busy_on_a_transition_without_a_key_is_409(api: OrdersClient) -> None:
    """SQLite's busy timeout runs out while another connection holds the write lock (no
    Idempotency-Key, so not the key's 409): 409 ``concurrent_conflict``, nothing applied."""
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's write lock; PostgreSQL is covered by the lock_timeout test")
    draft = services.create_order("shop-1")
    with sqlite_write_lock_held():
        response = api.confirm(str(draft.id), {"totalCents": 100})
    assert_problem(response, 409, "concurrent_conflict")
    assert response["Retry-After"] == "1"
    draft.refresh_from_db()
    assert (draft.status, draft.version) == ("draft", 1)
    assert api.confirm(str(draft.id), {"totalCents": 100}).status_code == 200


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_serialization_failure_under_repeatable_read_is_409(api: OrdersClient) -> None:
    """A host running REPEATABLE READ: another transaction changes the order after this
    request's snapshot and before it locks the row; PostgreSQL refuses with
    serialization_failure. The answer is 409 ``concurrent_conflict``, not a 500."""
    draft = services.create_order("shop-1")

    def concurrent_update() -> None:
        try:
            Order.objects.filter(pk=draft.pk).update(metadata={"touched": "yes"})
        finally:
            connection.close()  # this thread's own connection

    interfered = []

    def interfere(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        if "FOR UPDATE" in sql and "django_orders_order" in sql and not interfered:
            interfered.append(sql)
            thread = threading.Thread(target=concurrent_update)
            thread.start()
            thread.join()
        return execute(sql, params, many, context)

    with connection.cursor() as cursor:
        cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    try:
        with connection.execute_wrapper(interfere):
            response = api.confirm(
                str(draft.id), {"totalCents": 100}, headers={"Idempotency-Key": "k-rr"}
            )
    finally:
        connection.close()  # back to the configured isolation level on the next use
    assert interfered
    assert_problem(response, 409, "concurrent_conflict")
    assert response["Retry-After"] == "1"
    draft.refresh_from_db()
    assert (draft.status, draft.version, draft.metadata) == ("draft", 1, {"touched": "yes"})
    assert not IdempotencyKey.objects.filter(key="k-rr").exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_serialization_failure_at_commit_is_409(api: OrdersClient) -> None:
    """SERIALIZABLE hosts see serialization failures at COMMIT, after the view has answered
    (here forced by a deferred constraint trigger on the outbox): still 409
    ``concurrent_conflict``, nothing kept, the key free for the retry."""
    draft = services.create_order("shop-1")
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION orders_test_serialization() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'forced at commit' USING ERRCODE = "
            "'serialization_failure'; END $$"
        )
        cursor.execute(
            "CREATE CONSTRAINT TRIGGER orders_test_serialization AFTER INSERT ON "
            "django_orders_outbox_event DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
            "EXECUTE FUNCTION orders_test_serialization()"
        )
    try:
        response = api.confirm(
            str(draft.id), {"totalCents": 100}, headers={"Idempotency-Key": "k-commit"}
        )
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TRIGGER orders_test_serialization ON django_orders_outbox_event")
            cursor.execute("DROP FUNCTION orders_test_serialization()")
    assert_problem(response, 409, "concurrent_conflict")
    assert response["Retry-After"] == "1"
    draft.refresh_from_db()
    assert (draft.status, draft.version) == ("draft", 1)
    assert not IdempotencyKey.objects.filter(key="k-commit").exists()
    retried = api.confirm(
        str(draft.id), {"totalCents": 100}, headers={"Idempotency-Key": "k-commit"}
    )
    assert retried.status_code == 200, retried.content
