"""docs/guide/extending.md, "Host rules": ``ORDER_RULES`` run inside the transaction of a
create, confirm and close — after the order is locked and the transition is known to be
valid, before anything is written — and refuse with the host's own 409 / 422 problem.
Then nothing is written (no order change, no event, no stored ``Idempotency-Key``) and a
retry with the same key runs the rules again. They apply to every caller of the services."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import OperationalError, transaction
from django.test import override_settings

from django_orders import services, signals
from django_orders.models import IdempotencyKey, Order, OutboxEvent
from django_orders.problems import LOCK_NOT_AVAILABLE, sqlstate
from django_orders.services import OrderChange, RuleViolation
from tests.orders_api import OrdersClient, assert_problem
from tests.test_query_counts import counted

pytestmark = pytest.mark.django_db


class RecordingRule:
    """A host rule that keeps what it was asked, and refuses while ``refusal`` is set."""

    def __init__(self) -> None:
        self.changes: list[OrderChange] = []
        self.refusal: RuleViolation | None = None

    def __call__(self, change: OrderChange) -> None:
        self.changes.append(change)
        if self.refusal is not None:
            raise self.refusal

    @property
    def actions(self) -> list[str]:
        return [change.action for change in self.changes]


@pytest.fixture
def rule() -> Iterator[RecordingRule]:
    recording = RecordingRule()
    with override_settings(DJANGO_ORDERS={"ORDER_RULES": [recording]}):
        yield recording


@pytest.fixture
def api() -> OrdersClient:
    return OrdersClient()


def stock_conflict() -> RuleViolation:
    return RuleViolation("out_of_stock", "Item X-1 is out of stock.", status=409, sku="X-1")


def test_a_refused_create_leaves_no_order_no_event_no_key(
    api: OrdersClient, rule: RecordingRule
) -> None:
    rule.refusal = RuleViolation("over_budget", "This tenant's budget is spent.")
    body = {"totalCents": 5, "metadata": {"ref": "A-1"}}

    problem = assert_problem(api.create(body, key="rule-create"), 422, "over_budget")
    assert problem["detail"] == "This tenant's budget is spent."
    assert (Order.objects.count(), OutboxEvent.objects.count()) == (0, 0)
    assert not IdempotencyKey.objects.exists()

    # The retry runs the rule again: nothing was stored to replay.
    assert_problem(api.create(body, key="rule-create"), 422, "over_budget")
    assert rule.actions == ["create", "create"]
    rule.refusal = None
    created = api.create(body, key="rule-create")
    assert (created.status_code, rule.actions) == (201, ["create"] * 3)
    # A replay does not ask the rules: the change happened already.
    assert api.create(body, key="rule-create")["Idempotent-Replayed"] == "true"
    assert len(rule.changes) == 3


def test_a_refused_confirm_changes_nothing_and_the_retry_asks_again(
    api: OrdersClient, rule: RecordingRule
) -> None:
    order = services.create_order("shop-1")
    rule.refusal = stock_conflict()
    key = {"Idempotency-Key": "rule-confirm"}

    problem = assert_problem(
        api.confirm(str(order.id), {"totalCents": 9}, headers=key), 409, "out_of_stock"
    )
    assert problem["sku"] == "X-1"
    order.refresh_from_db()
    assert (order.status, order.version, order.total_cents) == ("draft", 1, None)
    assert list(OutboxEvent.objects.values_list("type", flat=True)) == ["order.created"]
    assert not IdempotencyKey.objects.exists()

    rule.refusal = None
    response = api.confirm(str(order.id), {"totalCents": 9}, headers=key)
    assert response.status_code == 200
    assert rule.actions == ["create", "confirm", "confirm"]


def test_a_refused_close_changes_nothing(api: OrdersClient, rule: RecordingRule) -> None:
    order_id = api.create({}).json()["id"]
    assert api.confirm(order_id, {"totalCents": 9}).status_code == 200
    rule.refusal = RuleViolation("open_invoice", "The order has an open invoice.")

    assert_problem(api.close_order(order_id), 422, "open_invoice")
    order = Order.objects.get(pk=order_id)
    assert (order.status, order.version, order.closed_at) == ("confirmed", 2, None)
    assert OutboxEvent.objects.filter(type="order.closed").count() == 0
    assert rule.actions == ["create", "confirm", "close"]


def test_what_a_rule_is_given(api: OrdersClient, rule: RecordingRule) -> None:
    user = User.objects.create_user("clerk")
    api.force_login(user)
    created = api.create({"totalCents": 5, "currency": "EUR"}).json()
    api.confirm(created["id"], {"totalCents": 7})

    create, confirm = rule.changes
    assert create.action == "create"
    assert create.order.tenant_id == "shop-1"
    assert dict(create.changes) == {"total_cents": 5, "currency": "EUR"}
    assert create.context["request"].user == user  # the DRF request: its authenticated user
    assert create.context["view"].tenant_id == "shop-1"

    assert confirm.action == "confirm"
    assert str(confirm.order.pk) == created["id"]
    assert dict(confirm.changes) == {"total_cents": 7}
    assert confirm.value("total_cents") == 7
    assert confirm.value("currency") == "EUR"
    with pytest.raises(TypeError):
        confirm.changes["total_cents"] = 8  # type: ignore[index]


def test_the_rule_sees_the_order_before_the_change(rule: RecordingRule) -> None:
    seen: list[tuple[str, int, Any]] = []

    def look(change: OrderChange) -> None:
        seen.append((change.order.status, change.order.version, change.value("total_cents")))

    order = services.create_order("shop-1")
    with override_settings(DJANGO_ORDERS={"ORDER_RULES": [look]}), transaction.atomic():
        services.confirm_order(services.get_order_for_update("shop-1", order.id), total_cents=3)
    assert seen == [("draft", 1, 3)]


def test_rules_run_before_anything_is_written(api: OrdersClient) -> None:
    stored: list[tuple[str, Any, int]] = []

    def look(change: OrderChange) -> None:
        version = Order.objects.filter(pk=change.order.pk).values_list("version", flat=True)
        stored.append((change.action, version.first(), OutboxEvent.objects.count()))

    with override_settings(DJANGO_ORDERS={"ORDER_RULES": [look]}):
        order_id = api.create({}).json()["id"]
        assert api.confirm(order_id, {"totalCents": 1}).status_code == 200
        assert api.close_order(order_id).status_code == 200
    assert stored == [("create", None, 0), ("confirm", 1, 1), ("close", 2, 2)]


@pytest.mark.parametrize(
    ("request_args", "status", "code"),
    [
        ({"if_match": '"7"'}, 412, "version_mismatch"),
        ({"body": {"totalCents": "9"}}, 400, "validation_error"),
        ({"order": "confirmed", "if_match": '"2"'}, 409, "invalid_transition"),
    ],
)
def test_rules_run_only_once_the_change_is_known_to_be_valid(
    api: OrdersClient, rule: RecordingRule, request_args: dict[str, Any], status: int, code: str
) -> None:
    order = services.create_order("shop-1")
    if request_args.get("order") == "confirmed":
        with transaction.atomic():
            services.confirm_order(services.get_order_for_update("shop-1", order.id), total_cents=1)
    rule.changes.clear()
    response = api.confirm(
        str(order.id),
        request_args.get("body", {"totalCents": 9}),
        if_match=request_args.get("if_match", '"1"'),
    )
    assert_problem(response, status, code)
    assert rule.changes == []


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_rule_runs_while_the_order_is_locked() -> None:
    """From inside the rule, another connection cannot lock the order (NOWAIT fails)."""
    order = services.create_order("shop-1")
    outcome: list[str] = []

    def probe(change: OrderChange) -> None:
        def other_connection() -> None:
            from django.db import connections

            try:
                with transaction.atomic(), connections["default"].cursor() as cursor:
                    cursor.execute(
                        "SELECT id FROM django_orders_order WHERE id = %s FOR UPDATE NOWAIT",
                        [change.order.pk],
                    )
                outcome.append("locked it")
            except OperationalError as exc:  # the lock is held: lock_not_available
                outcome.append(sqlstate(exc) or "")
            finally:
                connections["default"].close()

        thread = threading.Thread(target=other_connection)
        thread.start()
        thread.join(timeout=30)

    with override_settings(DJANGO_ORDERS={"ORDER_RULES": [probe]}):
        response = OrdersClient().confirm(str(order.id), {"totalCents": 1})
    assert response.status_code == 200
    assert outcome == [LOCK_NOT_AVAILABLE]


@pytest.mark.django_db(transaction=True)
def test_rules_apply_to_every_caller_of_the_services(rule: RecordingRule) -> None:
    sent: list[Any] = []
    signals.order_created.connect(receiver := lambda **kwargs: sent.append(kwargs))
    rule.refusal = RuleViolation("closed_shop", "The shop is closed.")
    try:
        with pytest.raises(RuleViolation) as caught:
            services.create_order("shop-1", total_cents=1)
    finally:
        signals.order_created.disconnect(receiver)
    assert (caught.value.code, caught.value.status) == ("closed_shop", 422)
    assert (Order.objects.count(), OutboxEvent.objects.count(), sent) == (0, 0, [])


def test_the_context_a_service_caller_passes_reaches_the_rule(rule: RecordingRule) -> None:
    services.create_order("shop-1", context={"actor": "importer"})
    assert dict(rule.changes[0].context) == {"actor": "importer"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"status": 400}, "409 or 422"),
        ({"status": 500}, "409 or 422"),
        ({"type": "x"}, "may not replace"),
        ({"title": "x"}, "may not replace"),
    ],
)
def test_a_rule_violation_keeps_to_the_problem_shape(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RuleViolation("c", "d", **kwargs)


def test_rules_add_no_query_of_their_own(api: OrdersClient, rule: RecordingRule) -> None:
    """The query budgets of tests/test_query_counts.py hold with a rule that asks nothing
    of the database: create 4, confirm 3, close 3."""
    with counted() as create:
        order_id = api.create({"totalCents": 1}).json()["id"]
    with counted() as confirm:
        assert api.confirm(order_id, {"totalCents": 5}).status_code == 200
    with counted() as close:
        assert api.close_order(order_id).status_code == 200
    assert len(create) <= 4, create
    assert len(confirm) <= 3, confirm
    assert len(close) <= 3, close
    assert rule.actions == ["create", "confirm", "close"]
