"""docs/guide/row-level-security.md: with ``ROW_LEVEL_SECURITY`` on and the policies of
``orders_rls install``, the database shows a tenant's request that tenant's rows only and
refuses writes of another tenant's; the relay and the purge work across tenants; with it off
nothing changes.

The suite connects as ``postgres``, a superuser, whom no policy binds: these tests act as a
role of their own, as an application would (no superuser, no ``BYPASSRLS``, every
privilege on the tables), by ``SET ROLE`` on every connection they open.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection
from django.test import override_settings
from django.utils import timezone

from django_orders import rls, services
from django_orders.models import IdempotencyKey, Order, OutboxEvent
from tests.app_role import acting_as_app_role, as_superuser
from tests.orders_api import OrdersClient

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

RLS_ON = {"ROW_LEVEL_SECURITY": True}


@pytest.fixture
def app_role() -> Iterator[str]:
    """Every connection of the test acts as a plain application role (tests/app_role.py)."""
    with acting_as_app_role() as role:
        yield role


@pytest.fixture
def policies() -> Iterator[None]:
    """The policies installed (as the superuser: only a table's owner may) and removed after."""
    call_command("orders_rls", "install", stdout=io.StringIO())
    try:
        yield
    finally:
        with as_superuser():
            call_command("orders_rls", "remove", stdout=io.StringIO())


@pytest.fixture
def two_tenants() -> dict[str, Order]:
    """An order of shop-1 and one of shop-2, written by the superuser."""
    return {tenant: services.create_order(tenant, total_cents=1) for tenant in ("shop-1", "shop-2")}


def whoami() -> tuple[str, bool]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user")
        user, superuser = cursor.fetchone()
    return user, superuser


# -- installing ------------------------------------------------------------------------------


def test_install_status_and_remove() -> None:
    tables = rls.tenant_tables()
    assert tables == [
        "django_orders_order",
        "django_orders_idempotency_key",
        "django_orders_outbox_event",
        "django_orders_outbox_sequence",
    ]
    assert all(not t["enabled"] and not t["policies"] for t in rls.status())

    call_command("orders_rls", "install", stdout=io.StringIO())
    call_command("orders_rls", "install", stdout=io.StringIO())  # again
    try:
        assert rls.status() == [
            {
                "table": table,
                "enabled": True,
                "forced": True,
                "policies": ["django_orders_cross_tenant", "django_orders_tenant_isolation"],
            }
            for table in tables
        ]
    finally:
        call_command("orders_rls", "remove", stdout=io.StringIO())
    assert all(not t["enabled"] and not t["forced"] and not t["policies"] for t in rls.status())


def test_the_sql_to_put_in_a_migration(capsys: pytest.CaptureFixture[str]) -> None:
    call_command("orders_rls", "sql")
    printed = capsys.readouterr().out
    assert printed.count("CREATE POLICY") == 8
    assert "FORCE ROW LEVEL SECURITY" in printed
    assert "current_setting('django_orders.tenant', true)" in printed
    assert all(t["policies"] == [] for t in rls.status())  # printing installs nothing


# -- isolation -------------------------------------------------------------------------------


@override_settings(DJANGO_ORDERS=RLS_ON)
@pytest.mark.parametrize("path", ["/host/orders-seen", "/host/orders-seen-function"])
def test_a_raw_query_in_a_tenant_request_sees_that_tenant_only(
    two_tenants: dict[str, Order], policies: None, app_role: str, path: str
) -> None:
    assert whoami()[1] is False
    for tenant in ("shop-1", "shop-2"):
        assert OrdersClient(tenant=tenant).call("GET", path).json() == [tenant]
    assert OrdersClient(tenant="shop-3").call("GET", path).json() == []


@pytest.mark.parametrize("path", ["/host/orders-seen", "/host/orders-seen-function"])
def test_with_it_off_the_same_query_sees_every_tenant(
    two_tenants: dict[str, Order], app_role: str, path: str
) -> None:
    assert whoami()[1] is False
    assert OrdersClient(tenant="shop-1").call("GET", path).json() == ["shop-1", "shop-2"]


@override_settings(DJANGO_ORDERS=RLS_ON)
def test_outside_a_tenant_transaction_no_row_is_visible(
    two_tenants: dict[str, Order], policies: None, app_role: str
) -> None:
    assert Order.objects.count() == 0
    assert OutboxEvent.objects.count() == 0
    with rls.tenant_transaction("shop-2"):
        assert list(Order.objects.values_list("tenant_id", flat=True)) == ["shop-2"]
        assert list(OutboxEvent.objects.values_list("tenant_id", flat=True)) == ["shop-2"]
    # set_config(…, true) ended with its transaction.
    assert Order.objects.count() == 0


@override_settings(DJANGO_ORDERS=RLS_ON)
def test_another_tenants_rows_cannot_be_written(
    two_tenants: dict[str, Order], policies: None, app_role: str
) -> None:
    other = two_tenants["shop-2"]
    with rls.tenant_transaction("shop-1"):
        # Changing or deleting it: the row is not there to change.
        assert Order.objects.filter(pk=other.pk).update(total_cents=99) == 0
        assert Order.objects.filter(pk=other.pk).delete()[0] == 0
    with pytest.raises(DatabaseError, match="row-level security"):  # noqa: SIM117
        with rls.tenant_transaction("shop-1"):
            services.create_order("shop-2")
    with pytest.raises(DatabaseError, match="row-level security"):  # noqa: SIM117
        with rls.tenant_transaction("shop-1"):
            # Moving one's own order to another tenant is refused by WITH CHECK.
            Order.objects.filter(pk=two_tenants["shop-1"].pk).update(tenant_id="shop-2")
    with as_superuser():
        assert Order.objects.get(pk=other.pk).total_cents == 1
        assert Order.objects.filter(tenant_id="shop-2").count() == 1


# -- the API, on and off ---------------------------------------------------------------------


def api_flow(tenant: str) -> dict[str, Any]:
    """Create (and replay), GET, list, confirm, close, as ``tenant``; what each answered."""
    api = OrdersClient(tenant=tenant)
    created = api.create({"totalCents": 5}, key=f"{tenant}-key")
    replayed = api.create({"totalCents": 5}, key=f"{tenant}-key")
    order_id = created.json()["id"]
    return {
        "created": created.status_code,
        "replayed": (replayed.status_code, replayed.get("Idempotent-Replayed")),
        "get": api.call("GET", f"/orders/{order_id}").status_code,
        "not_modified": api.call(
            "GET", f"/orders/{order_id}", headers={"If-None-Match": '"1"'}
        ).status_code,
        "listed": [item["id"] == order_id for item in api.call("GET", "/orders").json()["items"]],
        "confirmed": api.confirm(order_id, {"totalCents": 7}).status_code,
        "stale": api.confirm(order_id, {"totalCents": 7}).status_code,
        "closed": api.close_order(order_id).json()["version"],
        "missing": api.call("GET", "/orders/01a213ab-147c-764e-b36a-8b8ddb000649").status_code,
    }


EXPECTED_FLOW = {
    "created": 201,
    "replayed": (201, "true"),
    "get": 200,
    "not_modified": 304,
    "listed": [True],
    "confirmed": 200,
    "stale": 412,
    "closed": 3,
    "missing": 404,
}


@override_settings(DJANGO_ORDERS=RLS_ON)
def test_the_api_answers_the_same_with_it_on(policies: None, app_role: str) -> None:
    assert api_flow("shop-1") == EXPECTED_FLOW
    assert api_flow("shop-2") == EXPECTED_FLOW
    with as_superuser():
        assert sorted(Order.objects.values_list("tenant_id", flat=True)) == ["shop-1", "shop-2"]
        assert OutboxEvent.objects.count() == 6
        assert IdempotencyKey.objects.count() == 2


def test_the_api_answers_the_same_with_it_off(app_role: str) -> None:
    assert api_flow("shop-1") == EXPECTED_FLOW


@override_settings(DJANGO_ORDERS=RLS_ON)
def test_another_tenants_order_is_404_by_the_database_too(
    two_tenants: dict[str, Order], policies: None, app_role: str
) -> None:
    other = two_tenants["shop-2"]
    api = OrdersClient(tenant="shop-1")
    assert api.call("GET", f"/orders/{other.id}").status_code == 404
    assert api.confirm(str(other.id), {"totalCents": 2}).status_code == 404
    assert [item["tenantId"] for item in api.call("GET", "/orders").json()["items"]] == ["shop-1"]


@override_settings(DJANGO_ORDERS=RLS_ON)
def test_a_transition_is_one_statement_in_the_tenants_transaction(
    two_tenants: dict[str, Order], policies: None, app_role: str
) -> None:
    """The conditional statement (docs/benchmarks.md, Finding 16) runs in the tenant's
    transaction, so the policies bind it: another tenant's order is not changed even by
    id, version and status, and is then 404 from the locked read."""
    seen: list[tuple[str, bool]] = []

    def record(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        seen.append((sql.split(None, 1)[0].upper(), connection.in_atomic_block))
        return execute(sql, params, many, context)

    api = OrdersClient(tenant="shop-1")
    with connection.execute_wrapper(record):
        assert api.confirm(str(two_tenants["shop-1"].id), {"totalCents": 2}).status_code == 200
        own = list(seen)
        seen.clear()
        assert api.confirm(str(two_tenants["shop-2"].id), {"totalCents": 2}).status_code == 404
    own = [statement for statement in own if statement[0] != "SET"]  # the app role's, once
    assert own == [("SELECT", True), ("WITH", True)]  # set_config(tenant), the statement
    assert seen == [("SELECT", True), ("WITH", True), ("SELECT", True)]
    with as_superuser():
        assert Order.objects.get(pk=two_tenants["shop-2"].pk).status == "draft"
        assert OutboxEvent.objects.filter(type="order.confirmed").count() == 1


# -- across tenants: the relay, the purge, the status ----------------------------------------


@override_settings(
    DJANGO_ORDERS={**RLS_ON, "OUTBOX_RETENTION": 3600, "IDEMPOTENCY_TTL": 1},
)
def test_the_relay_the_status_and_the_purge_cross_tenants(
    two_tenants: dict[str, Order], policies: None, app_role: str
) -> None:
    assert whoami()[1] is False
    call_command("orders_outbox_status", stdout=io.StringIO())
    call_command("orders_outbox_relay", "--once", "--no-listen", stdout=io.StringIO())

    with as_superuser():
        assert set(OutboxEvent.objects.values_list("tenant_id", "status")) == {
            ("shop-1", "published"),
            ("shop-2", "published"),
        }
        OutboxEvent.objects.update(published_at=timezone.now() - dt.timedelta(days=1))

    call_command("orders_purge", stdout=io.StringIO())

    with as_superuser():
        assert OutboxEvent.objects.count() == 0


def test_policies_without_the_setting_leave_the_relay_nothing(
    two_tenants: dict[str, Order], policies: None, app_role: str
) -> None:
    # ROW_LEVEL_SECURITY off while the policies are installed: the relay's sessions are not
    # opened across tenants, and it finds nothing to publish (the guide's order of steps).
    out = io.StringIO()
    call_command("orders_outbox_relay", "--once", "--no-listen", stdout=out)
    assert "published 0" in out.getvalue()


# -- real concurrency, under the policies ----------------------------------------------------


@pytest.mark.slow
@override_settings(DJANGO_ORDERS=RLS_ON)
def test_concurrent_requests_keep_their_guarantees_under_the_policies(
    two_tenants: dict[str, Order], policies: None, app_role: str, live_port: int
) -> None:
    import httpx

    from tests.test_concurrency import run_together

    seen = httpx.get(
        f"http://127.0.0.1:{live_port}/host/orders-seen", headers={"X-Tenant-Id": "shop-2"}
    )
    assert seen.json() == ["shop-2"]  # the server's threads are bound by the policies too

    url = f"http://127.0.0.1:{live_port}/orders"
    headers = {"X-Tenant-Id": "shop-1", "Idempotency-Key": "rls-one-key"}
    created = run_together(
        20, lambda client: client.post(url, json={"totalCents": 1}, headers=headers)
    )
    assert {response.status_code for response in created} == {201}
    assert len({response.json()["id"] for response in created}) == 1

    order_id = created[0].json()["id"]
    confirm = {"X-Tenant-Id": "shop-1", "If-Match": '"1"'}
    confirmed = run_together(
        20,
        lambda client: client.patch(
            f"{url}/{order_id}/confirm", json={"totalCents": 5}, headers=confirm
        ),
    )
    assert sorted(response.status_code for response in confirmed) == [200] + [412] * 19
    with as_superuser():
        assert Order.objects.filter(tenant_id="shop-1").count() == 2  # the fixture's + one
        assert OutboxEvent.objects.filter(aggregate_id=order_id).count() == 2
