"""docs/operations.md: the admin shows orders (filter by tenant and status, read-only) and the
outbox (filter by state, action "re-queue"); idempotency keys are read-only too."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from django_orders import services
from django_orders.models import IdempotencyKey, Order, OutboxEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_() -> Client:
    user = User.objects.create_superuser("admin", "admin@example.com", "pw")
    client = Client()
    client.force_login(user)
    return client


def staff(*codenames: str) -> Client:
    user = User.objects.create_user("staff", "staff@example.com", "pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


def shown(page: Any) -> list[Any]:
    """The primary keys on a changelist page, in order."""
    return [obj.pk for obj in page.context["cl"].result_list]


def dead_event() -> OutboxEvent:
    order = services.create_order("shop-1")
    event = OutboxEvent.objects.get(aggregate_id=order.id)
    OutboxEvent.objects.filter(id=event.id).update(
        status="dead", attempts=10, last_error="attempt 10: HTTP 503"
    )
    return event


def test_order_changelist_filters_by_tenant_and_status(admin_client_: Client) -> None:
    a = services.create_order("shop-1")
    b = services.create_order("shop-2")
    page = admin_client_.get("/admin/django_orders/order/", {"tenant_id": "shop-2"})
    assert page.status_code == 200
    assert shown(page) == [b.pk]
    page = admin_client_.get("/admin/django_orders/order/", {"status__exact": "draft"})
    assert shown(page) == [b.pk, a.pk]
    page = admin_client_.get("/admin/django_orders/order/", {"status__exact": "confirmed"})
    assert shown(page) == []


def test_order_search_by_id_or_tenant(admin_client_: Client) -> None:
    a = services.create_order("shop-1")
    b = services.create_order("shop-2")
    assert shown(admin_client_.get("/admin/django_orders/order/", {"q": str(a.id)})) == [a.pk]
    assert shown(admin_client_.get("/admin/django_orders/order/", {"q": "shop-2"})) == [b.pk]
    page = admin_client_.get("/admin/django_orders/order/", {"q": "not-a-uuid"})
    assert page.status_code == 200
    assert shown(page) == []


def test_orders_are_read_only(admin_client_: Client) -> None:
    order = services.create_order("shop-1")
    url = f"/admin/django_orders/order/{order.pk}/change/"
    page = admin_client_.get(url)
    assert page.status_code == 200
    assert 'name="version"' not in page.text  # shown, not an input
    assert admin_client_.post(url, {"version": 7, "status": "closed"}).status_code == 403
    assert admin_client_.get("/admin/django_orders/order/add/").status_code == 403
    assert admin_client_.get(f"/admin/django_orders/order/{order.pk}/delete/").status_code == 403
    order.refresh_from_db()
    assert (order.version, order.status) == (1, "draft")


def test_outbox_changelist_filters_by_status_and_tenant(admin_client_: Client) -> None:
    dead = dead_event()
    services.create_order("shop-2")
    page = admin_client_.get("/admin/django_orders/outboxevent/", {"status__exact": "dead"})
    assert page.status_code == 200
    assert shown(page) == [dead.pk]
    assert "attempt 10: HTTP 503" in page.text
    page = admin_client_.get("/admin/django_orders/outboxevent/", {"tenant_id": "shop-2"})
    assert page.status_code == 200
    assert shown(page) == list(
        OutboxEvent.objects.filter(tenant_id="shop-2").values_list("pk", flat=True)
    )
    detail = admin_client_.get(f"/admin/django_orders/outboxevent/{dead.pk}/change/")
    assert detail.status_code == 200


def test_requeue_action(admin_client_: Client) -> None:
    dead = dead_event()
    pending = OutboxEvent.objects.get(aggregate_id=services.create_order("shop-1").id)
    response = admin_client_.post(
        "/admin/django_orders/outboxevent/",
        {
            "action": "requeue_events",
            "_selected_action": [str(dead.pk), str(pending.pk)],
        },
        follow=True,
    )
    assert response.status_code == 200
    assert "Re-queued 1 dead event" in response.text
    dead.refresh_from_db()
    assert (dead.status, dead.attempts) == ("pending", 0)
    assert dead.lease_token is None


def test_discard_action_deletes_dead_events_only(admin_client_: Client) -> None:
    dead = dead_event()
    pending = OutboxEvent.objects.get(aggregate_id=services.create_order("shop-1").id)
    response = admin_client_.post(
        "/admin/django_orders/outboxevent/",
        {
            "action": "discard_events",
            "_selected_action": [str(dead.pk), str(pending.pk)],
        },
        follow=True,
    )
    assert "Discarded 1 dead event" in response.text
    assert list(OutboxEvent.objects.values_list("pk", flat=True)) == [pending.pk]


def test_actions_need_their_permissions() -> None:
    dead_event()
    viewer = staff("view_outboxevent")
    page = viewer.get("/admin/django_orders/outboxevent/")
    assert page.status_code == 200
    assert "requeue_events" not in page.text
    assert "discard_events" not in page.text
    User.objects.filter(username="staff").delete()
    operator_client = staff("view_outboxevent", "change_outboxevent")
    page = operator_client.get("/admin/django_orders/outboxevent/")
    assert "requeue_events" in page.text
    assert "discard_events" not in page.text


def test_idempotency_keys_are_read_only(admin_client_: Client) -> None:
    from django.utils import timezone

    key = IdempotencyKey.objects.create(
        tenant_id="shop-1",
        key="k-1",
        method="POST",
        path="/orders",
        fingerprint="0" * 64,
        state="completed",
        response_status=201,
        expires_at=timezone.now(),
    )
    page = admin_client_.get("/admin/django_orders/idempotencykey/", {"q": "k-1"})
    assert page.status_code == 200
    assert "k-1" in page.text
    assert (
        admin_client_.get(f"/admin/django_orders/idempotencykey/{key.pk}/change/").status_code
        == 200
    )
    assert admin_client_.get("/admin/django_orders/idempotencykey/add/").status_code == 403
    assert Order.objects.count() == 0


def test_changelists_never_scan_for_distinct_tenants(admin_client_: Client) -> None:
    """The tenant filter is a typed box: no DISTINCT over a table that may be huge."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    services.create_order("shop-1")
    for url in ("/admin/django_orders/order/", "/admin/django_orders/outboxevent/"):
        with CaptureQueriesContext(connection) as queries:
            page = admin_client_.get(url, {"status": "pending" if "outbox" in url else "draft"})
        assert page.status_code == 200
        assert not [q for q in queries if "DISTINCT" in q["sql"].upper()], url
        html = page.content.decode()
        assert 'name="tenant_id"' in html
        # The other filter survives typing a tenant: it is kept in the box's form.
        assert 'type="hidden" name="status"' in html


def test_outbox_type_filter(admin_client_: Client) -> None:
    order = services.create_order("shop-1")
    page = admin_client_.get("/admin/django_orders/outboxevent/", {"type": "order.created"})
    created = OutboxEvent.objects.get(aggregate_id=order.id, type="order.created")
    assert shown(page) == [created.pk]
    page = admin_client_.get("/admin/django_orders/outboxevent/", {"type": "order.closed"})
    assert shown(page) == []


def test_idempotency_key_search_is_exact_on_tenant_or_key(admin_client_: Client) -> None:
    from django.utils import timezone

    expires = timezone.now()
    for tenant, key in (("shop-1", "abc"), ("shop-2", "abcd"), ("abc", "zzz")):
        IdempotencyKey.objects.create(
            tenant_id=tenant,
            key=key,
            method="POST",
            path="/orders",
            fingerprint="f",
            expires_at=expires,
        )
    page = admin_client_.get("/admin/django_orders/idempotencykey/", {"q": "abc"})
    found = {(k.tenant_id, k.key) for k in IdempotencyKey.objects.filter(pk__in=shown(page))}
    assert found == {("shop-1", "abc"), ("abc", "zzz")}  # never the substring match "abcd"


@pytest.mark.parametrize(
    ("changelist", "params"),
    [
        ("order", {"tenant_id": "shop\x001"}),
        ("order", {"q": "shop\x001"}),
        ("outboxevent", {"tenant_id": "shop\x001"}),
        ("outboxevent", {"type": "order.created\x00"}),
        ("outboxevent", {"q": "shop\x001"}),
        ("idempotencykey", {"q": "k\x00"}),
    ],
)
def test_a_nul_in_a_filter_or_search_matches_nothing(
    admin_client_: Client, changelist: str, params: dict[str, str]
) -> None:
    """No column holds a NUL: such a filter shows an empty list, not a 500. (A search term
    with a NUL is refused by Django's own search form, which then searches nothing.)"""
    services.create_order("shop-1")
    page = admin_client_.get(f"/admin/django_orders/{changelist}/", params)
    assert page.status_code == 200
    if "q" not in params:
        assert shown(page) == []


def test_host_events_are_listed_filtered_by_typed_type_and_requeued(admin_client_: Client) -> None:
    from django_orders.outbox import record_event

    services.create_order("shop-1")
    event = record_event(
        "com.example.invoice.issued",
        aggregate_type="invoice",
        aggregate_id="INV-1",
        data={},
        tenant_id="shop-1",
    )
    OutboxEvent.objects.filter(pk=event.pk).update(status="dead")

    page = admin_client_.get(
        "/admin/django_orders/outboxevent/", {"type": "com.example.invoice.issued"}
    )
    assert shown(page) == [event.pk]
    assert b"Exact event type, then Enter" in page.content
    assert b"order.created" in page.content  # the package's types as shortcuts
    response = admin_client_.post(
        "/admin/django_orders/outboxevent/",
        {"action": "requeue_events", "_selected_action": [str(event.pk)]},
        follow=True,
    )
    assert "Re-queued 1 dead event" in response.text
    assert OutboxEvent.objects.get(pk=event.pk).status == "pending"
