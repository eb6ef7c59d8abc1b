"""Issue 3 §7: host settings that must not break the API — ``ATOMIC_REQUESTS = True``,
``APPEND_SLASH``, a mount prefix other than the root (and a ``SCRIPT_NAME``), and the
time-zone settings."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, connection
from django.test import override_settings
from django.urls import set_script_prefix

from django_orders import signals
from django_orders.models import IdempotencyKey, Order, OutboxEvent
from tests.orders_api import OrdersClient, assert_problem

pytestmark = pytest.mark.django_db


# -- ATOMIC_REQUESTS ----------------------------------------------------------------------


@pytest.fixture
def atomic_requests() -> Iterator[None]:
    # override_settings(DATABASES=...) does not reach an open connection; the request
    # handler reads this very dict, so set it there and put it back afterwards.
    previous = connection.settings_dict["ATOMIC_REQUESTS"]
    connection.settings_dict["ATOMIC_REQUESTS"] = True
    yield
    connection.settings_dict["ATOMIC_REQUESTS"] = previous


@pytest.mark.usefixtures("atomic_requests")
def test_atomic_requests_create_replay_and_transitions(api: OrdersClient) -> None:
    first = api.create({"totalCents": 1}, key="atomic")
    replay = api.create({"totalCents": 1}, key="atomic")
    order_id = first.json()["id"]

    assert first.status_code == 201
    assert replay["Idempotent-Replayed"] == "true"
    assert replay.content == first.content
    assert api.confirm(order_id, {"totalCents": 2}).status_code == 200
    assert api.close_order(order_id).status_code == 200
    assert Order.objects.get().version == 3


@pytest.mark.usefixtures("atomic_requests")
def test_atomic_requests_a_refused_request_leaves_nothing(api: OrdersClient) -> None:
    order_id = api.create({}).json()["id"]
    headers = {"Idempotency-Key": "atomic-412"}

    assert (
        api.confirm(order_id, {"totalCents": 2}, if_match='"5"', headers=headers).status_code == 412
    )
    assert api.confirm(order_id, {"bad": 1}, headers=headers).status_code == 400
    assert api.close_order(order_id, if_match='"1"', headers=headers).status_code == 409
    assert IdempotencyKey.objects.count() == 1  # the create's
    assert api.confirm(order_id, {"totalCents": 2}, headers=headers).status_code == 200
    assert OutboxEvent.objects.count() == 2


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("atomic_requests")
def test_atomic_requests_commit_for_real_and_signal_after_commit(api: OrdersClient) -> None:
    seen: list[int] = []

    def receive(sender: Any, order: Order, **kwargs: Any) -> None:
        seen.append(Order.objects.get(pk=order.pk).version)

    signals.order_created.connect(receive)
    try:
        response = api.create({}, key="atomic-commit")
        assert_problem(api.create({"currency": "x"}, key="atomic-bad"), 400, "validation_error")
    finally:
        signals.order_created.disconnect(receive)

    assert response.status_code == 201
    assert seen == [1]
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["atomic-commit"]


# -- APPEND_SLASH -------------------------------------------------------------------------


@pytest.mark.parametrize("append_slash", [True, False])
def test_append_slash_never_redirects_the_api(api: OrdersClient, append_slash: bool) -> None:
    with override_settings(APPEND_SLASH=append_slash):
        created = api.call("POST", "/orders", {}, headers={"Idempotency-Key": "slash-1"})
        order_id = created.json()["id"]
        responses = [
            api.call("POST", "/orders/", {}, headers={"Idempotency-Key": "slash-2"}),
            api.call("GET", f"/orders/{order_id}"),
            api.call("GET", f"/orders/{order_id}/"),
            api.call(
                "PATCH",
                f"/orders/{order_id}/confirm/",
                {"totalCents": 1},
                headers={"If-Match": '"1"'},
            ),
            api.call("POST", f"/orders/{order_id}/close/", headers={"If-Match": '"2"'}),
        ]
    assert created.status_code == 201
    assert [r.status_code for r in responses] == [201, 200, 200, 200, 200]


# -- where the host mounts the URLs ---------------------------------------------------------


@pytest.mark.parametrize(
    ("urlconf", "prefix"),
    [
        ("tests.urls_prefixed", "/api/v1"),
        ("tests.urls_namespaced", "/api"),  # inside the host's "api" namespace
    ],
)
def test_a_mount_prefix(api: OrdersClient, urlconf: str, prefix: str) -> None:
    with override_settings(ROOT_URLCONF=urlconf):
        created = api.call("POST", f"{prefix}/orders", {}, headers={"Idempotency-Key": "prefix"})
        order_id = created.json()["id"]
        found = api.get(created["Location"], headers={"X-Tenant-Id": "shop-1"})
        outside = api.confirm(f"..{prefix}/orders/{order_id}", {"totalCents": 1})
        confirmed = api.call(
            "PATCH",
            f"{prefix}/orders/{order_id}/confirm",
            {"totalCents": 1},
            headers={"If-Match": '"1"'},
        )
        unmounted = api.call("GET", f"/orders/{order_id}")

    assert created.status_code == 201
    assert created["Location"] == f"http://testserver{prefix}/orders/{order_id}"
    assert found.status_code == 200
    assert outside.status_code == 404
    assert confirmed.status_code == 200
    assert unmounted.status_code == 404


def test_a_script_name_is_kept_in_the_location() -> None:
    # A host served under a path prefix by its WSGI server (SCRIPT_NAME=/shop). The test
    # client does not apply SCRIPT_NAME to reverse(), so call Django's WSGI handler itself,
    # inside the test's transaction (without the handler closing the connection).
    environ = {
        "REQUEST_METHOD": "POST",
        "SCRIPT_NAME": "/shop",
        "PATH_INFO": "/orders",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": "2",
        "wsgi.input": io.BytesIO(b"{}"),
        "HTTP_X_TENANT_ID": "shop-1",
        "HTTP_IDEMPOTENCY_KEY": "script",
        "HTTP_HOST": "testserver",
    }
    setup_testing_defaults(environ)
    started: list[tuple[str, list[tuple[str, str]]]] = []
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        result = WSGIHandler()(
            environ, lambda status, headers, *exc: started.append((status, headers))
        )
        body = json.loads(b"".join(result))
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
        set_script_prefix("/")
    status, headers = started[0]
    assert status.startswith("201")
    assert dict(headers)["Location"] == f"http://testserver/shop/orders/{body['id']}"


def test_the_location_uses_the_requests_host_and_scheme(api: OrdersClient) -> None:
    response = api.generic(
        "POST",
        "/orders",
        "{}",
        content_type="application/json",
        secure=True,
        headers={"X-Tenant-Id": "shop-1", "Idempotency-Key": "host", "Host": "api.example.com"},
    )
    assert response["Location"].startswith("https://api.example.com/orders/")


# -- time zones -----------------------------------------------------------------------------


@override_settings(TIME_ZONE="America/New_York")
def test_timestamps_are_utc_whatever_the_time_zone(api: OrdersClient) -> None:
    body = api.create({}).json()
    order = Order.objects.get()
    assert body["createdAt"].endswith("Z")
    assert body["createdAt"] == order.created_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_use_tz_is_djangos_default() -> None:
    from django.conf import global_settings, settings

    assert global_settings.USE_TZ is True
    assert settings.USE_TZ is global_settings.USE_TZ


@override_settings(USE_TZ=False)
def test_use_tz_false_still_works(api: OrdersClient) -> None:
    created = api.create({}, key="naive")
    order_id = created.json()["id"]
    replay = api.create({}, key="naive")

    assert created.status_code == 201
    assert replay["Idempotent-Replayed"] == "true"
    assert api.confirm(order_id, {"totalCents": 1}).status_code == 200
    assert api.call("GET", f"/orders/{order_id}").json()["createdAt"].endswith("Z")
