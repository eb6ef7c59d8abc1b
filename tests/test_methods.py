"""``HEAD`` and ``OPTIONS`` on every endpoint (docs/api/README.md).

``HEAD`` answers what ``GET`` would — status and headers, ``ETag`` and ``Link`` included —
without content (Django serves a ``HEAD`` with the ``GET`` handler and its servers drop the
body; checked on the wire too). ``OPTIONS`` answers 204 with ``Allow`` and reveals nothing of
the code (DRF's default prints the view's docstring).
"""

from __future__ import annotations

import socket
from typing import Any

import pytest
from rest_framework.test import APIClient

from django_orders import services
from django_orders.models import Order

pytestmark = pytest.mark.django_db

COMPARED_HEADERS = ("Content-Type", "Content-Length", "ETag", "Link", "Vary", "Allow")


@pytest.fixture
def order() -> Order:
    services.create_order("shop-1")
    return services.create_order("shop-1")


def headers_of(response: Any) -> dict[str, str | None]:
    return {name: response.get(name) for name in COMPARED_HEADERS}


@pytest.mark.parametrize("path", ["/orders/{id}", "/orders/{id}/", "/orders?limit=1", "/orders"])
def test_head_answers_the_headers_of_get_without_content(
    tenant_api: APIClient, order: Order, path: str
) -> None:
    url = path.format(id=order.id)
    got = tenant_api.get(url)
    head = tenant_api.head(url)

    assert got.status_code == head.status_code == 200
    assert headers_of(head) == headers_of(got)
    assert head.content == b""
    assert int(head["Content-Length"]) == len(got.content) > 0
    if "limit=1" in path:
        assert head["Link"].endswith('rel="next"')


def test_head_with_a_matching_if_none_match_is_304(tenant_api: APIClient, order: Order) -> None:
    response = tenant_api.head(f"/orders/{order.id}", HTTP_IF_NONE_MATCH='"1"')
    assert response.status_code == 304
    assert response["ETag"] == '"1"'
    assert response.content == b""


def test_head_of_a_missing_order_is_404_without_content(tenant_api: APIClient) -> None:
    response = tenant_api.head("/orders/0190b5a4-0000-7000-8000-000000000000")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
    assert response.content == b""


def test_head_needs_the_tenant_like_get(drf_client: APIClient, order: Order) -> None:
    response = drf_client.head(f"/orders/{order.id}")
    assert response.status_code == 400
    assert response.content == b""


@pytest.mark.parametrize("suffix", ["/confirm", "/close"])
def test_head_on_a_transition_is_405_with_allow(
    tenant_api: APIClient, order: Order, suffix: str
) -> None:
    response = tenant_api.head(f"/orders/{order.id}{suffix}")
    assert response.status_code == 405
    assert "HEAD" not in response["Allow"]


@pytest.mark.django_db(transaction=True)
def test_no_head_content_reaches_the_wire(live_port: int) -> None:
    """Over a real socket to Django's development server: the answer ends with its headers."""
    order = services.create_order("shop-1")
    request = (
        f"HEAD /orders/{order.id} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Tenant-Id: shop-1\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", live_port), timeout=10) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, rest = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert b'ETag: "1"' in head
    assert rest == b""


@pytest.mark.parametrize(
    ("path", "allow"),
    [
        ("/orders", {"GET", "HEAD", "POST", "OPTIONS"}),
        ("/orders/{id}", {"GET", "HEAD", "OPTIONS"}),
        ("/orders/{id}/confirm", {"PATCH", "OPTIONS"}),
        ("/orders/{id}/close", {"POST", "OPTIONS"}),
    ],
)
def test_options_is_204_with_allow_and_no_body(
    tenant_api: APIClient, order: Order, path: str, allow: set[str]
) -> None:
    response = tenant_api.options(path.format(id=order.id))
    assert response.status_code == 204
    assert {method.strip() for method in response["Allow"].split(",")} == allow
    assert response.content == b""


def test_options_needs_the_tenant_like_any_request(drf_client: APIClient) -> None:
    response = drf_client.options("/orders")
    assert response.status_code == 400
    assert response.json()["code"] == "missing_tenant"
