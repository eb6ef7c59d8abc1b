"""docs/guide/tenancy.md: every rule, through real requests."""

import threading

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token

from django_orders.tenancy import get_current_tenant

PROBLEM = "application/problem+json"


def assert_problem(response, status: int, code: str) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.content
    assert response["Content-Type"] == PROBLEM
    body = response.json()
    assert body["code"] == code
    assert body["status"] == status
    assert body["type"] == "about:blank"
    assert body["title"]
    assert body["detail"]


@pytest.fixture
def client() -> Client:
    return Client()


# -- which views are tenant-scoped ------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path", ["/orders", "/orders/", "/host/scoped-function", "/host/scoped-api"]
)
def test_scoped_views_need_the_header(client: Client, path: str) -> None:
    assert_problem(client.get(path), 400, "missing_tenant")


@pytest.mark.parametrize("path", ["/health", "/host/plain-api"])
def test_host_views_that_are_not_scoped_answer_without_the_header(
    client: Client, path: str
) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.json()["tenant"] is None


@pytest.mark.django_db
def test_host_admin_is_untouched(client: Client) -> None:
    assert client.get("/admin/login/").status_code == 200


def test_unknown_url_is_still_the_hosts_404(client: Client) -> None:
    assert client.get("/nowhere").status_code == 404


# -- the header ------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["", None])
def test_missing_or_empty_header(client: Client, value: str | None) -> None:
    headers = {} if value is None else {"X-Tenant-Id": value}
    assert_problem(client.get("/host/scoped-api", headers=headers), 400, "missing_tenant")


@pytest.mark.parametrize(
    "value", ["a" * 65, "shop 1", "shop/1", "shöp", "shop:1", "shop\t1", "'shop'", "shop%201"]
)
def test_invalid_tenant(client: Client, value: str) -> None:
    response = client.get("/host/scoped-api", headers={"X-Tenant-Id": value})
    assert_problem(response, 400, "invalid_tenant")


@pytest.mark.parametrize("value", ["a", "a" * 64, "Shop-1", "shop.eu_2", "0", "-._"])
def test_valid_tenant(client: Client, value: str) -> None:
    response = client.get("/host/scoped-api", headers={"X-Tenant-Id": value})
    assert response.status_code == 200
    assert response.json() == {"tenant": value, "current": value}


def test_non_ascii_header_bytes_are_invalid_not_a_crash(client: Client) -> None:
    # WSGI carries header bytes as latin-1; a UTF-8 tenant arrives mangled: reject, no 5xx.
    response = client.get(
        "/host/scoped-api", HTTP_X_TENANT_ID="t\u00e9nant".encode().decode("latin-1")
    )
    assert_problem(response, 400, "invalid_tenant")


@override_settings(DJANGO_ORDERS={"TENANT_HEADER": "X-Shop"})
def test_header_name_is_configurable(client: Client) -> None:
    assert_problem(
        client.get("/host/scoped-api", headers={"X-Tenant-Id": "a"}), 400, "missing_tenant"
    )
    assert client.get("/host/scoped-api", headers={"X-Shop": "a"}).json()["tenant"] == "a"


@override_settings(DJANGO_ORDERS={"TENANT_ID_PATTERN": r"^t-[0-9]+$"})
def test_pattern_is_configurable(client: Client) -> None:
    assert_problem(
        client.get("/host/scoped-api", headers={"X-Tenant-Id": "shop"}), 400, "invalid_tenant"
    )
    assert client.get("/host/scoped-api", headers={"X-Tenant-Id": "t-7"}).status_code == 200


# -- exempt paths and the resolver hook --------------------------------------------------


def test_exempt_paths_need_no_tenant_even_when_scoped(client: Client) -> None:
    response = client.get("/docs/scoped-api")
    assert response.status_code == 200
    assert response.json() == {"tenant": None, "current": None}


@override_settings(DJANGO_ORDERS={"TENANT_EXEMPT_PATHS": ["/host/"]})
def test_exempt_paths_are_configurable(client: Client) -> None:
    assert client.get("/host/scoped-api").status_code == 200
    assert_problem(client.get("/docs/scoped-api"), 400, "missing_tenant")


@override_settings(DJANGO_ORDERS={"TENANT_RESOLVER": "tests.hooks.query_param_resolver"})
def test_resolver_hook(client: Client) -> None:
    assert client.get("/host/scoped-api?tenant=acme").json()["tenant"] == "acme"
    assert_problem(
        client.get("/host/scoped-api", headers={"X-Tenant-Id": "acme"}), 400, "missing_tenant"
    )
    assert_problem(client.get("/host/scoped-api?tenant=a b"), 400, "invalid_tenant")


# -- the access hook -------------------------------------------------------------------


@override_settings(DJANGO_ORDERS={"TENANT_ACCESS_CHECK": "tests.hooks.allow_shop_1"})
@pytest.mark.parametrize("path", ["/host/scoped-api", "/host/scoped-function"])
def test_access_hook_refusal_is_403(client: Client, path: str) -> None:
    assert client.get(path, headers={"X-Tenant-Id": "shop-1"}).status_code == 200
    assert_problem(client.get(path, headers={"X-Tenant-Id": "shop-2"}), 403, "tenant_forbidden")


@pytest.mark.django_db
@override_settings(DJANGO_ORDERS={"TENANT_ACCESS_CHECK": "tests.hooks.allow_shop_1"})
def test_access_hook_guards_the_package_views(client: Client) -> None:
    assert_problem(
        client.get("/orders", headers={"X-Tenant-Id": "shop-2"}), 403, "tenant_forbidden"
    )


@pytest.mark.django_db
@override_settings(DJANGO_ORDERS={"TENANT_ACCESS_CHECK": "tests.hooks.staff_only"})
def test_access_hook_sees_the_drf_token_user(client: Client) -> None:
    staff = User.objects.create_user("staff", is_staff=True)
    token = Token.objects.create(user=staff)
    ok = client.get(
        "/host/scoped-api", headers={"X-Tenant-Id": "shop-1", "Authorization": f"Token {token.key}"}
    )
    assert ok.status_code == 200
    # Anonymous: refused with 403 tenant_forbidden (not DRF's 401 for anonymous refusals).
    assert_problem(
        client.get("/host/scoped-api", headers={"X-Tenant-Id": "shop-1"}), 403, "tenant_forbidden"
    )


@pytest.mark.django_db
@override_settings(
    REST_FRAMEWORK={
        "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.TokenAuthentication"],
        "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    }
)
def test_package_views_honour_the_hosts_drf_permissions(client: Client) -> None:
    response = client.get("/orders", headers={"X-Tenant-Id": "shop-1"})
    assert_problem(response, 401, "not_authenticated")
    user = User.objects.create_user("u")
    token = Token.objects.create(user=user)
    response = client.get(
        "/orders", headers={"X-Tenant-Id": "shop-1", "Authorization": f"Token {token.key}"}
    )
    assert response.status_code == 200


# -- no leaks, no queries ---------------------------------------------------------------


def test_tenant_does_not_leak_into_the_next_request_on_the_same_thread(client: Client) -> None:
    assert client.get("/host/scoped-api", headers={"X-Tenant-Id": "shop-1"}).status_code == 200
    assert get_current_tenant() is None
    assert client.get("/health").json()["tenant"] is None
    assert client.get("/host/plain-api").json()["tenant"] is None


def test_concurrent_requests_on_threads_see_only_their_own_tenant() -> None:
    barrier = threading.Barrier(8)
    seen: dict[str, object] = {}

    def call(tenant: str) -> None:
        barrier.wait(timeout=10)
        seen[tenant] = Client().get("/host/scoped-api", headers={"X-Tenant-Id": tenant}).json()

    threads = [threading.Thread(target=call, args=(f"t{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert seen == {f"t{i}": {"tenant": f"t{i}", "current": f"t{i}"} for i in range(8)}


@pytest.mark.django_db
@pytest.mark.parametrize("headers", [{}, {"X-Tenant-Id": "bad tenant"}, {"X-Tenant-Id": "shop-1"}])
def test_the_tenant_checks_make_no_query(client: Client, headers: dict) -> None:
    with CaptureQueriesContext(connection) as queries:
        client.get("/host/scoped-api", headers=headers)
    assert len(queries) == 0


@pytest.mark.parametrize("path", ["/host/scoped-api", "/host/scoped-function"])
def test_the_tenant_does_not_leak_even_when_the_view_fails(client: Client, path: str) -> None:
    assert client.get(path, headers={"X-Tenant-Id": "shop-1"}).json()["tenant"] == "shop-1"
    assert get_current_tenant() is None
    assert client.get("/health").json()["tenant"] is None
    client.raise_request_exception = False
    client.get("/host/scoped-api", headers={"X-Tenant-Id": "shop-2"}, data={"boom": "1"})
    assert get_current_tenant() is None


@pytest.mark.django_db
def test_the_old_middleware_still_listed_changes_nothing(client: Client) -> None:
    # Earlier versions needed TenantMiddleware; a host that still lists it keeps working
    # (Django drops it from the chain) and `manage.py check` says to remove it (W003).
    from django.conf import settings

    with override_settings(
        MIDDLEWARE=[*settings.MIDDLEWARE, "django_orders.middleware.TenantMiddleware"]
    ):
        assert_problem(client.get("/host/scoped-api"), 400, "missing_tenant")
        assert client.get("/host/scoped-api", headers={"X-Tenant-Id": "a"}).status_code == 200
        assert client.get("/orders", headers={"X-Tenant-Id": "a"}).status_code == 200
        assert client.get("/health").status_code == 200


# -- a host's own pattern cannot let an unstorable tenant through ------------------------


def test_the_length_cap_is_the_width_of_the_tenant_columns() -> None:
    from django_orders import models, tenancy

    assert tenancy.TENANT_ID_MAX_LENGTH == models.TENANT_ID_MAX_LENGTH
    for model in (models.Order, models.IdempotencyKey, models.OutboxEvent):
        assert model._meta.get_field("tenant_id").max_length == tenancy.TENANT_ID_MAX_LENGTH


@pytest.mark.django_db
@override_settings(DJANGO_ORDERS={"TENANT_ID_PATTERN": r"^[^/]+$"})
@pytest.mark.parametrize("tenant", ["a" * 65, "a" * 1000, "shop\x00"])
def test_a_permissive_pattern_still_refuses_what_cannot_be_stored(
    client: Client, tenant: str
) -> None:
    # Before the cap, a 65-character id matched this pattern and failed in the database
    # (varchar(64)) as a 500.
    headers = {"X-Tenant-Id": tenant, "Idempotency-Key": "k"}
    response = client.post("/orders", "{}", content_type="application/json", headers=headers)
    assert_problem(response, 400, "invalid_tenant")
    ok = client.post(
        "/orders",
        "{}",
        content_type="application/json",
        headers={**headers, "X-Tenant-Id": "a" * 64},
    )
    assert ok.status_code == 201


# -- the host's other DRF settings (docs/guide/tenancy.md) -----------------------------------------


@pytest.mark.django_db
@override_settings(
    REST_FRAMEWORK={"DEFAULT_THROTTLE_CLASSES": ["rest_framework.throttling.AnonRateThrottle"]}
)
def test_package_views_honour_the_hosts_drf_throttles(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.core.cache import cache
    from rest_framework.throttling import SimpleRateThrottle

    # DRF reads the rates from a class attribute bound when rest_framework.throttling is
    # first imported (tests/conftest.py), which override_settings cannot reach.
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", {"anon": "2/min"})
    cache.clear()  # DRF throttles count in the default cache
    try:
        headers = {"X-Tenant-Id": "shop-1"}
        assert [client.get("/orders", headers=headers).status_code for _ in range(2)] == [200] * 2
        response = client.get("/orders", headers=headers)
        assert_problem(response, 429, "throttled")
        assert int(response["Retry-After"]) > 0
    finally:
        cache.clear()


def host_exception_handler(exc: Exception, context: dict) -> object:
    """A host's global DRF exception handler with its own error shape."""
    from rest_framework.response import Response

    return Response({"host_error": str(exc)}, status=418)


@pytest.mark.django_db
@override_settings(
    REST_FRAMEWORK={
        "EXCEPTION_HANDLER": "tests.test_tenancy.host_exception_handler",
        "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.FormParser"],
        "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.BrowsableAPIRenderer"],
    }
)
def test_the_hosts_global_parser_renderer_and_handler_are_neither_used_nor_changed(
    client: Client,
) -> None:
    headers = {"X-Tenant-Id": "shop-1", "Idempotency-Key": "host-settings"}
    created = client.post(
        "/orders", '{"totalCents": 3}', content_type="application/json", headers=headers
    )
    assert created.status_code == 201
    assert created["Content-Type"] == "application/json"
    assert created.json()["totalCents"] == 3
    refused = client.post("/orders", "{", content_type="application/json", headers=headers)
    assert_problem(refused, 400, "invalid_json")

    # The host's own view still gets the host's handler: the package changed nothing.
    from rest_framework.settings import api_settings

    assert api_settings.EXCEPTION_HANDLER is host_exception_handler
    host = client.delete("/host/plain-api")
    assert host.status_code == 418
    assert host.json() == {"host_error": 'Method "DELETE" not allowed.'}


@pytest.mark.parametrize(
    ("path", "exempt"),
    [
        ("/schema/", True),
        ("/schema/?format=json", True),
        ("/docs/", True),
        ("/docs/scoped-api", True),
        ("/admin/", True),
        ("/admin/django_orders/order/", True),
        ("/orders", False),
        ("/schema", False),  # a prefix match on "/schema/", not on "/schema"
        ("/host/admin/", False),
    ],
)
def test_the_default_exempt_paths(path: str, exempt: bool) -> None:
    from django_orders.tenancy import is_exempt_path

    assert is_exempt_path(path) is exempt


# -- caches must key tenant-scoped responses by the tenant ---------------------------------


def vary(response: object) -> set[str]:
    header = response.get("Vary", "")  # type: ignore[attr-defined]
    return {name.strip().lower() for name in header.split(",") if name.strip()}


@pytest.mark.django_db
def test_scoped_responses_vary_by_the_tenant_header(client: Client) -> None:
    headers = {"X-Tenant-Id": "shop-1"}
    created = client.post(
        "/orders",
        "{}",
        content_type="application/json",
        headers={**headers, "Idempotency-Key": "v"},
    )
    responses = [
        created,
        client.post(
            "/orders",
            "{}",
            content_type="application/json",
            headers={**headers, "Idempotency-Key": "v"},
        ),  # the replay
        client.get(created["Location"], headers=headers),
        client.get(created["Location"], headers={**headers, "If-None-Match": '"1"'}),  # 304
        client.get("/orders", headers=headers),
        client.get("/orders/nope", headers=headers),
        client.get("/host/scoped-api", headers=headers),
        client.get("/host/scoped-function", headers=headers),
    ]
    assert [r.status_code for r in responses] == [201, 201, 200, 304, 200, 404, 200, 200]
    for response in responses:
        assert "x-tenant-id" in vary(response), response
    assert "x-tenant-id" not in vary(client.get("/host/plain-api"))


@override_settings(DJANGO_ORDERS={"TENANT_HEADER": "X-Shop"})
def test_the_vary_header_names_the_configured_tenant_header(client: Client) -> None:
    response = client.get("/host/scoped-api", headers={"X-Shop": "a"})
    assert "x-shop" in vary(response)
    assert "x-tenant-id" not in vary(response)
