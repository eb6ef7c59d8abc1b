"""docs/guide/tenancy.md: where and when the tenant is resolved — after DRF authentication
and the view's permissions — what a resolver may raise, what the errors say, and
``tenant_context()``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.test import Client, override_settings
from rest_framework.authtoken.models import Token

from django_orders.tenancy import get_current_tenant, tenant_context, tenant_scoped
from tests.orders_api import assert_problem

TOKEN_REQUIRED = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.TokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
}


@pytest.fixture
def client() -> Client:
    return Client()


@pytest.fixture
def throttle_cache() -> Iterator[None]:
    cache.clear()  # DRF's throttles count in the default cache
    yield
    cache.clear()


# -- the host's authentication and permissions come first ---------------------------------


@pytest.mark.django_db
@override_settings(REST_FRAMEWORK=TOKEN_REQUIRED)
@pytest.mark.parametrize("headers", [{}, {"X-Tenant-Id": "not a tenant"}])
def test_an_anonymous_caller_gets_the_hosts_401_not_a_tenant_error(
    client: Client, headers: dict[str, str]
) -> None:
    # Before: 400 missing_tenant / invalid_tenant, from a middleware that ran before DRF.
    response = client.get("/orders", headers=headers)
    assert_problem(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"] == "Token"


@pytest.mark.django_db
def test_bad_credentials_come_before_the_tenant(client: Client) -> None:
    response = client.get("/orders", headers={"Authorization": "Token nope"})
    assert_problem(response, 401, "not_authenticated")


@pytest.mark.django_db
@override_settings(REST_FRAMEWORK=TOKEN_REQUIRED)
def test_an_authenticated_caller_then_meets_the_tenant_checks(client: Client) -> None:
    token = Token.objects.create(user=User.objects.create_user("u")).key
    auth = {"Authorization": f"Token {token}"}
    assert_problem(client.get("/orders", headers=auth), 400, "missing_tenant")
    assert_problem(
        client.get("/orders", headers={**auth, "X-Tenant-Id": "a b"}), 400, "invalid_tenant"
    )
    assert client.get("/orders", headers={**auth, "X-Tenant-Id": "shop-1"}).status_code == 200


@pytest.mark.django_db
@override_settings(
    REST_FRAMEWORK={
        **TOKEN_REQUIRED,
        "DEFAULT_THROTTLE_CLASSES": ["tests.hooks.OneRequestThrottle"],
    },
    DJANGO_ORDERS={"TENANT_ACCESS_CHECK": "tests.hooks.allow_shop_1"},
)
@pytest.mark.usefixtures("throttle_cache")
def test_confirm_checks_auth_tenant_access_throttles_then_the_request(client: Client) -> None:
    # docs/api/confirm-order.md rows 1-6, each request failing every later check too.
    token = Token.objects.create(user=User.objects.create_user("u")).key
    auth = {"Authorization": f"Token {token}"}
    bad_key = {"Idempotency-Key": "x" * 300}

    def confirm(order_id: str = "nope", **headers: str) -> object:
        return client.patch(
            f"/orders/{order_id}/confirm", "{", content_type="application/json", headers=headers
        )

    assert_problem(confirm(**bad_key, **{"X-Tenant-Id": "a b"}), 401, "not_authenticated")
    assert_problem(confirm(**auth, **bad_key), 400, "missing_tenant")
    assert_problem(confirm(**auth, **bad_key, **{"X-Tenant-Id": "shop-2"}), 403, "tenant_forbidden")
    ok_tenant = {**auth, **bad_key, "X-Tenant-Id": "shop-1"}
    # The throttle lets one request through: it meets the idempotency key (row 6) …
    assert_problem(confirm(str(uuid.uuid4()), **ok_tenant), 400, "invalid_idempotency_key")
    # … and the next is throttled before its malformed id is looked at (row 5).
    assert_problem(confirm(**ok_tenant), 429, "throttled")


# -- what a resolver may raise -----------------------------------------------------------


@override_settings(DJANGO_ORDERS={"TENANT_RESOLVER": "tests.hooks.raising_resolver"})
@pytest.mark.parametrize(
    ("raised", "status", "code"),
    [
        ("not_authenticated", 401, "not_authenticated"),
        ("permission_denied", 403, "permission_denied"),
        ("throttled", 429, "throttled"),
        ("django_permission_denied", 403, "permission_denied"),
        ("problem", 403, "no_shop"),
    ],
)
@pytest.mark.django_db
def test_what_a_resolver_raises_is_a_problem_of_its_status(
    client: Client, raised: str, status: int, code: str
) -> None:
    # Before: the middleware let these escape as HTML 500s.
    response = client.get(f"/orders?raise={raised}")
    assert_problem(response, status, code)
    if raised == "throttled":
        assert response["Retry-After"] == "7"


@override_settings(DJANGO_ORDERS={"TENANT_RESOLVER": "tests.hooks.raising_resolver"})
@pytest.mark.parametrize(
    ("raised", "status", "code"),
    [("not_authenticated", 401, "not_authenticated"), ("problem", 403, "no_shop")],
)
def test_a_function_view_answers_a_raising_resolver_with_a_problem(
    client: Client, raised: str, status: int, code: str
) -> None:
    assert_problem(client.get(f"/host/scoped-function?raise={raised}"), status, code)


@override_settings(DJANGO_ORDERS={"TENANT_RESOLVER": "tests.hooks.raising_resolver"})
def test_on_a_host_view_a_drf_exception_is_left_to_the_hosts_handler(client: Client) -> None:
    response = client.get("/host/scoped-api?raise=permission_denied")
    assert response.status_code == 403
    assert response["Content-Type"] == "application/json"  # DRF's own handler's shape
    assert_problem(client.get("/host/scoped-api?raise=problem"), 403, "no_shop")


# -- the errors name where the tenant was looked for ---------------------------------------


def detail(response: object) -> str:
    return str(response.json()["detail"])  # type: ignore[attr-defined]


def test_the_default_errors_name_the_header(client: Client) -> None:
    assert detail(client.get("/host/scoped-api")) == "The X-Tenant-Id header is required."
    assert (
        detail(client.get("/host/scoped-api", headers={"X-Tenant-Id": "a b"}))
        == "The X-Tenant-Id header is not a valid tenant id."
    )
    with override_settings(DJANGO_ORDERS={"TENANT_HEADER": "X-Shop"}):
        assert detail(client.get("/host/scoped-api")) == "The X-Shop header is required."


@pytest.mark.parametrize(
    ("resolver", "source"),
    [
        ("tests.hooks.declared_resolver", "The shop of your account"),
        ("tests.hooks.declared_resolver_object", "The subdomain"),
    ],
)
@pytest.mark.parametrize("path", ["/host/scoped-api", "/host/scoped-function"])
def test_a_declared_resolver_names_its_source(
    client: Client, resolver: str, source: str, path: str
) -> None:
    with override_settings(DJANGO_ORDERS={"TENANT_RESOLVER": resolver}):
        missing = client.get(path, headers={"X-Tenant-Id": "shop-1"})
        invalid = client.get(f"{path}?shop=a@b", headers={"X-Tenant-Id": "shop-1"})
    assert_problem(missing, 400, "missing_tenant")
    assert detail(missing) == f"{source} is required."
    assert_problem(invalid, 400, "invalid_tenant")
    assert detail(invalid) == f"{source} is not a valid tenant id."


# -- views of every kind keep the current tenant to their request --------------------------


def test_a_django_class_based_view_is_scoped_with_method_decorator(client: Client) -> None:
    assert_problem(client.get("/host/scoped-django-view"), 400, "missing_tenant")
    response = client.get("/host/scoped-django-view", headers={"X-Tenant-Id": "shop-1"})
    assert response.json() == {"tenant": "shop-1", "attr": "shop-1"}
    assert get_current_tenant() is None


def test_tenant_scoped_refuses_a_class_and_says_what_to_do() -> None:
    from tests.hostapp.views import PlainAPIView

    with pytest.raises(TypeError, match="TenantScopedMixin"):
        tenant_scoped(PlainAPIView)


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_the_browsable_api_rendering_after_the_view_leaves_no_tenant_behind(
    client: Client, method: str
) -> None:
    # BrowsableAPIRenderer calls check_permissions() again while rendering, once the
    # view's dispatch() is over; that must not set the current tenant.
    response = client.generic(
        method, "/host/browsable-api", headers={"X-Tenant-Id": "shop-1", "Accept": "text/html"}
    )
    assert response.status_code == 200
    assert b"shop-1" in response.content
    assert get_current_tenant() is None


# -- tenant_context() ------------------------------------------------------------------------


def fail_inside(tenant: str) -> None:
    with tenant_context(tenant):
        assert get_current_tenant() == tenant
        raise RuntimeError


def test_tenant_context_restores_the_previous_tenant_even_on_error() -> None:
    with tenant_context("outer"):
        with pytest.raises(RuntimeError):
            fail_inside("inner")
        assert get_current_tenant() == "outer"
    assert get_current_tenant() is None


def test_a_request_inside_a_tenant_context_keeps_its_own_tenant(client: Client) -> None:
    with tenant_context("from-a-task"):
        response = client.get("/host/scoped-api", headers={"X-Tenant-Id": "shop-1"})
        assert response.json() == {"tenant": "shop-1", "current": "shop-1"}
        assert get_current_tenant() == "from-a-task"
