"""docs/guide/tenancy.md "Behind your authentication" and "CORS": each recipe's code,
executed from the guide itself (tests/docs_snippets.py), against real requests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core.cache import cache
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token
from rest_framework.throttling import SimpleRateThrottle

from django_orders.models import Order
from tests import docs_snippets
from tests.orders_api import assert_problem

pytestmark = pytest.mark.django_db

GUIDE = "guide/tenancy.md"
ALICE, BOB = "alice@example.com", "bob+orders@example.com"


def post_order(client: Client, path: str = "/orders", **headers: str) -> Any:
    return client.post(
        path, "{}", content_type="application/json", headers={"Idempotency-Key": "k", **headers}
    )


def token_lookups(queries: CaptureQueriesContext) -> int:
    return sum('"authtoken_token"' in query["sql"] for query in queries.captured_queries)


@pytest.fixture
def users() -> dict[str, User]:
    return {name: User.objects.create_user(name, password="pw") for name in (ALICE, BOB)}


# -- session and token: the tenant from request.user -----------------------------------------


@pytest.fixture
def user_tenant_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    docs_snippets.install(monkeypatch, "myproject.tenancy", GUIDE, "resolver-user")
    with override_settings(**docs_snippets.settings_from(GUIDE, "settings-session-token")):
        yield


@pytest.mark.usefixtures("user_tenant_settings")
def test_token_requests_act_for_their_users_tenant(users: dict[str, User]) -> None:
    alice = {"Authorization": f"Token {Token.objects.create(user=users[ALICE]).key}"}
    bob = {"Authorization": f"Token {Token.objects.create(user=users[BOB]).key}"}
    client = Client()

    with CaptureQueriesContext(connection) as create_queries:
        # The header names another tenant: the tenant comes from the user regardless.
        created = post_order(client, **alice, **{"X-Tenant-Id": "bob"})
    order_id = created.json()["id"]
    with CaptureQueriesContext(connection) as get_queries:
        own = client.get(f"/orders/{order_id}", headers=alice)
    with CaptureQueriesContext(connection) as confirm_queries:
        confirmed = client.patch(
            f"/orders/{order_id}/confirm",
            json.dumps({"totalCents": 5}),
            content_type="application/json",
            headers={**alice, "If-Match": '"1"'},
        )

    assert created.status_code == 201, created.content
    assert created.json()["tenantId"] == ALICE  # "@" and "+" fit the widened pattern
    assert own.status_code == 200
    assert confirmed.status_code == 200
    # One token lookup per request, by DRF: the resolver reads the user it loaded.
    assert [token_lookups(q) for q in (create_queries, get_queries, confirm_queries)] == [1, 1, 1]
    # Another user is another tenant: alice's order does not exist for bob.
    assert_problem(client.get(f"/orders/{order_id}", headers=bob), 404, "not_found")
    assert client.get("/orders", headers=bob).json()["items"] == []
    assert Order.objects.get().tenant_id == ALICE


@pytest.mark.usefixtures("user_tenant_settings")
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_anonymous_requests_get_the_hosts_401(method: str) -> None:
    response = Client().generic(method, "/orders", "{}", content_type="application/json")
    assert_problem(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"] == "Token"
    assert not Order.objects.exists()


@pytest.mark.usefixtures("user_tenant_settings")
def test_session_requests_act_for_their_users_tenant(users: dict[str, User]) -> None:
    client = Client()
    client.force_login(users[BOB])
    created = post_order(client)
    assert created.status_code == 201, created.content
    assert created.json()["tenantId"] == BOB


@pytest.mark.usefixtures("user_tenant_settings")
def test_with_the_default_pattern_a_username_tenant_error_names_the_user() -> None:
    user = User.objects.create_user("carol@example.com")
    token = Token.objects.create(user=user).key
    with override_settings(DJANGO_ORDERS={"TENANT_RESOLVER": "myproject.tenancy.user_tenant"}):
        response = Client().get("/orders", headers={"Authorization": f"Token {token}"})
    body = assert_problem(response, 400, "invalid_tenant")
    assert body["detail"] == "The authenticated user's username is not a valid tenant id."


# -- JWT (djangorestframework-simplejwt): the tenant from a claim ---------------------------


@pytest.fixture
def jwt_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    docs_snippets.install(monkeypatch, "myproject.jwt", GUIDE, "jwt")
    docs_snippets.install(monkeypatch, "myproject.urls", GUIDE, "urls-jwt")
    with override_settings(
        ROOT_URLCONF="myproject.urls", **docs_snippets.settings_from(GUIDE, "settings-jwt")
    ):
        yield


def access_token(client: Client, username: str) -> str:
    response = client.post(
        "/api/token/",
        json.dumps({"username": username, "password": "pw"}),
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    return str(response.json()["access"])


@pytest.mark.usefixtures("jwt_settings")
def test_jwt_requests_act_for_the_tenant_of_their_token(users: dict[str, User]) -> None:
    client = Client()
    alice = {"Authorization": f"Bearer {access_token(client, ALICE)}"}
    bob = {"Authorization": f"Bearer {access_token(client, BOB)}"}

    created = post_order(client, "/api/orders", **alice)
    order_id = created.json()["id"]

    assert created.status_code == 201, created.content
    assert created.json()["tenantId"] == ALICE
    assert created["Location"] == f"http://testserver/api/orders/{order_id}"
    assert client.get(f"/api/orders/{order_id}", headers=alice).status_code == 200
    assert_problem(client.get(f"/api/orders/{order_id}", headers=bob), 404, "not_found")
    anonymous = client.get("/api/orders")
    assert_problem(anonymous, 401, "not_authenticated")
    assert anonymous["WWW-Authenticate"].startswith("Bearer")


# -- per view: subclasses mounted with orders_urls() ---------------------------------------


@pytest.fixture
def subclass_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    docs_snippets.install(monkeypatch, "myproject.api", GUIDE, "api-subclasses")
    docs_snippets.install(monkeypatch, "myproject.urls", GUIDE, "urls-subclasses")
    recipe = docs_snippets.settings_from(GUIDE, "settings-subclasses")
    # DRF binds THROTTLE_RATES at import (tests/conftest.py): give it the recipe's rates.
    monkeypatch.setattr(
        SimpleRateThrottle, "THROTTLE_RATES", recipe["REST_FRAMEWORK"]["DEFAULT_THROTTLE_RATES"]
    )
    cache.clear()
    with override_settings(ROOT_URLCONF="myproject.urls", **recipe):
        yield recipe
    cache.clear()


def test_subclassed_views_apply_their_own_auth_and_throttles(
    subclass_settings: dict[str, Any], users: dict[str, User]
) -> None:
    token = {"Authorization": f"Token {Token.objects.create(user=users[ALICE]).key}"}
    client = Client()

    anonymous = post_order(client, "/api/orders", **{"X-Tenant-Id": "shop-1"})
    created = post_order(client, "/api/orders", **token, **{"X-Tenant-Id": "shop-1"})
    order_id = created.json()["id"]

    assert_problem(anonymous, 401, "not_authenticated")
    assert created.status_code == 201
    # The routes not passed to orders_urls() are the package's views (host defaults).
    confirm = client.patch(
        f"/api/orders/{order_id}/confirm",
        json.dumps({"totalCents": 1}),
        content_type="application/json",
        headers={"X-Tenant-Id": "shop-1", "If-Match": '"1"'},
    )
    assert confirm.status_code == 200
    # throttle_scope "orders" at the recipe's rate: one request was counted already.
    rate = int(
        subclass_settings["REST_FRAMEWORK"]["DEFAULT_THROTTLE_RATES"]["orders"].split("/")[0]
    )
    headers = {**token, "X-Tenant-Id": "shop-1"}
    statuses = [client.get("/api/orders", headers=headers).status_code for _ in range(rate - 1)]
    assert statuses == [200] * (rate - 1)
    assert_problem(client.get("/api/orders", headers=headers), 429, "throttled")


# -- what a resolver may raise ------------------------------------------------------------------


def test_a_resolver_raising_a_problem_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    docs_snippets.install(monkeypatch, "myproject.tenancy", GUIDE, "resolver-problem")
    with override_settings(DJANGO_ORDERS={"TENANT_RESOLVER": "myproject.tenancy.shop_of_user"}):
        response = Client().get("/orders")
    body = assert_problem(response, 403, "no_shop")
    assert body["detail"] == "Your account belongs to no shop."


def test_the_tenant_context_recipe() -> None:
    docs_snippets.run(GUIDE, "tenant-context")


# -- CORS (django-cors-headers) ---------------------------------------------------------------


@pytest.fixture
def cors() -> Iterator[None]:
    middleware = ["corsheaders.middleware.CorsMiddleware", *settings.MIDDLEWARE]
    cors_settings = docs_snippets.settings_from(GUIDE, "settings-cors")
    with override_settings(MIDDLEWARE=middleware, **cors_settings):
        yield


@pytest.mark.usefixtures("cors")
def test_the_cors_settings_let_a_browser_use_the_api() -> None:
    client = Client()
    origin = {"Origin": "https://shop.example.com"}
    preflight = client.options(
        "/orders/x/confirm",
        headers={
            **origin,
            "Access-Control-Request-Method": "PATCH",
            "Access-Control-Request-Headers": "content-type, idempotency-key, if-match, "
            "if-none-match, x-tenant-id",
        },
    )
    allowed = {h.strip() for h in preflight["Access-Control-Allow-Headers"].split(",")}
    created = post_order(client, **origin, **{"X-Tenant-Id": "shop-1"})
    exposed = {h.strip().lower() for h in created["Access-Control-Expose-Headers"].split(",")}

    assert preflight.status_code == 200
    assert "PATCH" in preflight["Access-Control-Allow-Methods"]
    assert {"idempotency-key", "if-match", "if-none-match", "x-tenant-id"} <= allowed
    assert created.status_code == 201
    assert created["Access-Control-Allow-Origin"] == "https://shop.example.com"
    assert {"etag", "location", "idempotent-replayed", "link", "retry-after"} <= exposed
    assert {"ETag", "Location"} <= set(created.headers)
