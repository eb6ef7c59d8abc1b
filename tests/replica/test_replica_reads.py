"""docs/guide/replicas.md: the list and the GET read from a streaming replica; writes, the
Idempotency-Key claim and the reads of a write go to the primary; a client that has just
written, asks for an order the replica lacks, or holds a newer ETag, reads the primary.

Against a real primary and its replica (tests/replica/settings.py). The replica's replay is
paused where a test needs it to lag: what it then answers proves where a read went.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import DatabaseError, connections
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from django_orders import rls, services
from django_orders.models import Order
from django_orders.routers import replica_reads
from tests.app_role import acting_as_app_role
from tests.orders_api import OrdersClient
from tests.replica.conftest import Replay, wait_replicated
from tests.waiting import wait_until

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True, databases=["default", "replica"]),
]

COOKIE = "django_orders_read_primary"


class Queries:
    """The statements each database received inside the block."""

    def __enter__(self) -> Queries:
        self._contexts = {
            alias: CaptureQueriesContext(connections[alias]) for alias in ("default", "replica")
        }
        for context in self._contexts.values():
            context.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        for context in self._contexts.values():
            context.__exit__(*exc)

    def on(self, alias: str) -> list[str]:
        return [query["sql"] for query in self._contexts[alias].captured_queries]


def fresh_client() -> OrdersClient:
    """A client without cookies: one that never wrote, or ignores cookies."""
    return OrdersClient()


def created_order() -> Order:
    order = services.create_order("shop-1", total_cents=10)
    wait_replicated()
    return order


def test_the_replica_is_a_streaming_standby_that_refuses_writes() -> None:
    with connections["replica"].cursor() as cursor:
        cursor.execute("SELECT pg_is_in_recovery()")
        assert cursor.fetchone()[0] is True
    assert settings.DATABASES["replica"]["PORT"] != settings.DATABASES["default"]["PORT"]
    with pytest.raises(DatabaseError, match="read-only"):
        Order.objects.using("replica").create(tenant_id="shop-1", currency="USD")


def test_get_and_list_read_from_the_replica_only() -> None:
    order = created_order()
    api = fresh_client()

    with Queries() as queries:
        got = api.call("GET", f"/orders/{order.id}")
        listed = api.call("GET", "/orders")

    assert got.status_code == 200
    assert got.json()["id"] == str(order.id)
    assert [item["id"] for item in listed.json()["items"]] == [str(order.id)]
    assert len(queries.on("replica")) == 2
    assert queries.on("default") == []
    assert COOKIE not in got.cookies  # reads start no window


def test_writes_and_the_idempotency_check_go_to_the_primary(replay: Replay) -> None:
    replay.pause()
    api = fresh_client()

    with Queries() as queries:
        created = api.create({"totalCents": 5}, key="replica-key")
        replayed = api.create({"totalCents": 5}, key="replica-key")
        order_id = created.json()["id"]
        confirmed = api.confirm(order_id, {"totalCents": 7})
        closed = api.close_order(order_id)

    assert created.status_code == 201
    # The claim went to the primary: the replica, paused, has no key and would have let
    # the retry create a second order.
    assert replayed.status_code == 201
    assert replayed["Idempotent-Replayed"] == "true"
    assert Order.objects.using("default").count() == 1
    # The transitions found and locked the order on the primary, where it is.
    assert confirmed.status_code == 200
    assert closed.status_code == 200
    assert closed.json()["version"] == 3
    assert queries.on("replica") == []
    assert not Order.objects.using("replica").exists()  # the replica did lag all along


def test_a_client_reads_its_own_writes_from_the_primary(replay: Replay) -> None:
    order = created_order()
    writer, other = fresh_client(), fresh_client()
    replay.pause()

    confirmed = writer.confirm(str(order.id), {"totalCents": 20})
    assert confirmed.status_code == 200
    assert COOKIE in confirmed.cookies
    assert confirmed.cookies[COOKIE]["httponly"]

    # Within its window the writer sees its write, though the replica has not replayed it…
    seen = writer.call("GET", f"/orders/{order.id}")
    assert (seen.json()["version"], seen["ETag"]) == (2, '"2"')
    listed = writer.call("GET", "/orders")
    assert listed.json()["items"][0]["status"] == "confirmed"
    # …while a client that did not write may read the replica's older version.
    stale = other.call("GET", f"/orders/{order.id}")
    assert (stale.json()["version"], stale["ETag"]) == (1, '"1"')
    assert other.call("GET", "/orders").json()["items"][0]["status"] == "draft"

    replay.resume()
    wait_replicated()
    assert other.call("GET", f"/orders/{order.id}").json()["version"] == 2


def test_an_order_the_replica_does_not_have_yet_is_read_from_the_primary(
    replay: Replay,
) -> None:
    replay.pause()
    created = fresh_client().create({"totalCents": 5})
    location = created["Location"]

    with Queries() as queries:
        got = fresh_client().get(location, headers={"X-Tenant-Id": "shop-1"})

    assert got.status_code == 200
    assert got.json() == created.json()
    assert len(queries.on("replica")) == 1  # a miss there…
    assert len(queries.on("default")) == 1  # …asked again of the primary


def test_a_missing_order_is_404_after_asking_both() -> None:
    order = created_order()
    response = OrdersClient(tenant="shop-2").call("GET", f"/orders/{order.id}")
    assert response.status_code == 404


def test_an_etag_newer_than_the_replica_is_answered_by_the_primary(replay: Replay) -> None:
    order = created_order()
    replay.pause()
    OrdersClient().confirm(str(order.id), {"totalCents": 20})
    api = fresh_client()

    # The client holds "2" (say, from the confirm's response, without the cookie): the
    # replica's "1" is behind it, so the primary answers — 304, the client is current.
    with Queries() as queries:
        current = api.call("GET", f"/orders/{order.id}", headers={"If-None-Match": '"2"'})
    assert current.status_code == 304
    assert current["ETag"] == '"2"'
    assert len(queries.on("default")) == 1
    # Holding "1", the client gets the replica's answer: 304 as well, until it replays.
    old = api.call("GET", f"/orders/{order.id}", headers={"If-None-Match": '"1"'})
    assert old.status_code == 304
    assert old["ETag"] == '"1"'


@override_settings(DJANGO_ORDERS={**settings.DJANGO_ORDERS, "READ_YOUR_WRITES_WINDOW": 1})
def test_the_window_ends_and_the_client_reads_the_replica_again(replay: Replay) -> None:
    order = created_order()
    writer = fresh_client()
    replay.pause()
    writer.confirm(str(order.id), {"totalCents": 20})
    assert writer.call("GET", f"/orders/{order.id}").json()["version"] == 2

    # Signed timestamps have a resolution of one second: within three, the window is over.
    wait_until(
        lambda: writer.call("GET", f"/orders/{order.id}").json()["version"] == 1,
        timeout=3.5,
        interval=0.2,
        message="the window to end (the replica's version 1 again)",
    )


def test_a_forged_cookie_opens_no_window(replay: Replay) -> None:
    order = created_order()
    replay.pause()
    OrdersClient().confirm(str(order.id), {"totalCents": 20})
    forger = fresh_client()
    forger.cookies[COOKIE] = "1"

    assert forger.call("GET", f"/orders/{order.id}").json()["version"] == 1


# -- with row-level security (docs/guide/row-level-security.md) ------------------------------


@pytest.fixture
def row_level_security(request: pytest.FixtureRequest) -> Iterator[None]:
    """Policies on, the setting on, every connection (the replica's too) as an app role
    (``indirect`` parametrization with ``False``: none of it)."""
    if getattr(request, "param", True) is False:
        yield
        return
    call_command("orders_rls", "install", stdout=io.StringIO())
    try:
        # wait_replicated: the role, its grants and the policies on the replica first.
        with (
            acting_as_app_role(created=wait_replicated),
            override_settings(DJANGO_ORDERS={**settings.DJANGO_ORDERS, "ROW_LEVEL_SECURITY": True}),
        ):
            yield
    finally:
        call_command("orders_rls", "remove", stdout=io.StringIO())


def test_the_replica_enforces_the_policies_too(row_level_security: None) -> None:
    with rls.tenant_transaction("shop-1"):
        mine = services.create_order("shop-1", total_cents=1)
    with rls.tenant_transaction("shop-2"):
        theirs = services.create_order("shop-2", total_cents=1)
    wait_replicated()
    api = fresh_client()

    with Queries() as queries:
        got = api.call("GET", f"/orders/{mine.id}")
        listed = api.call("GET", "/orders")
    assert got.status_code == 200
    assert [item["id"] for item in listed.json()["items"]] == [str(mine.id)]
    assert queries.on("default") == []  # both read on the replica, in a tenant transaction
    assert sum("set_config" in sql for sql in queries.on("replica")) == 2

    assert api.call("GET", f"/orders/{theirs.id}").status_code == 404
    # A raw query on the replica, as the views run it: the database filters.
    with replica_reads("replica"), rls.tenant_transaction("shop-1", using="replica"):
        assert list(Order.objects.values_list("tenant_id", flat=True)) == ["shop-1"]
    with replica_reads("replica"):  # no tenant: nothing at all
        assert Order.objects.count() == 0


def test_under_the_policies_a_miss_is_read_from_the_primary(
    row_level_security: None, replay: Replay
) -> None:
    replay.pause()
    created = fresh_client().create({"totalCents": 5})
    with Queries() as queries:
        got = fresh_client().get(created["Location"], headers={"X-Tenant-Id": "shop-1"})
    assert got.status_code == 200
    # A tenant transaction on each: the replica's (a miss), then the primary's.
    assert sum("set_config" in sql for sql in queries.on("replica")) == 1
    assert sum("set_config" in sql for sql in queries.on("default")) == 1


# -- a replica that cannot be reached ---------------------------------------------------------


@pytest.mark.django_db(transaction=True, databases=["default", "replica", "unreachable"])
@pytest.mark.parametrize("row_level_security", [False, True], indirect=True)
def test_an_unreachable_replica_leaves_the_reads_to_the_primary(
    row_level_security: None,
) -> None:
    # Inside the fixture's settings (ROW_LEVEL_SECURITY on or off), the one replica is down.
    with override_settings(
        DJANGO_ORDERS={**settings.DJANGO_ORDERS, "READ_REPLICAS": ["unreachable"]}
    ):
        created = fresh_client().create({"totalCents": 5})
        assert created.status_code == 201
        order_id = created.json()["id"]
        with Queries() as queries:
            got = fresh_client().call("GET", f"/orders/{order_id}")
            listed = fresh_client().call("GET", "/orders")

    assert got.status_code == 200
    assert got.json() == created.json()
    assert listed.status_code == 200
    assert [item["id"] for item in listed.json()["items"]] == [order_id]
    reads = [sql for sql in queries.on("default") if 'FROM "django_orders_order"' in sql]
    assert len(reads) == 2  # the GET's and the page's, both on the primary
