"""docs/guide/tenancy.md "Per view: subclass the views": a host's subclass of a package
view gets DRF's conventions — its own authentication, permission and throttle classes win,
the host's defaults apply where it sets none, and the tenant access check always applies."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.test import override_settings
from rest_framework.authtoken.models import Token
from rest_framework.test import APIRequestFactory
from rest_framework.throttling import SimpleRateThrottle

from django_orders import views
from django_orders.models import Order
from django_orders.urls import orders_urls
from tests.orders_api import OrdersClient, assert_problem

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.urls_view_subclasses")]


@pytest.fixture
def token() -> str:
    return Token.objects.create(user=User.objects.create_user("ann", password="pw")).key


@pytest.fixture
def throttle_cache() -> Iterator[None]:
    cache.clear()  # DRF's throttles count in the default cache
    yield
    cache.clear()


def post(api: OrdersClient, prefix: str, **headers: str) -> object:
    return api.call("POST", f"{prefix}/orders", {}, headers={"Idempotency-Key": "k", **headers})


def test_a_subclass_permission_classes_apply(api: OrdersClient, token: str) -> None:
    # Before: the subclass's IsAuthenticated was ignored and this anonymous POST got 201.
    refused = post(api, "/locked")
    assert_problem(refused, 401, "not_authenticated")
    assert refused["WWW-Authenticate"] == "Token"  # the host's first authenticator
    assert not Order.objects.exists()

    created = post(api, "/locked", Authorization=f"Token {token}")
    assert created.status_code == 201
    assert created["Location"].startswith("http://testserver/locked/orders/")
    # The package's own view, with the host's defaults (AllowAny), is unchanged.
    assert post(api, "", **{"Idempotency-Key": "other"}).status_code == 201


def test_host_default_restores_the_hosts_setting_in_a_sub_subclass(api: OrdersClient) -> None:
    assert post(api, "/reopened").status_code == 201
    with override_settings(
        REST_FRAMEWORK={
            "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.TokenAuthentication"],
            "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAdminUser"],
        }
    ):
        refused = post(api, "/reopened", **{"Idempotency-Key": "k2"})
    assert_problem(refused, 401, "not_authenticated")


def test_a_subclass_authentication_classes_apply(api: OrdersClient, token: str) -> None:
    refused = post(api, "/basic", Authorization=f"Token {token}")  # the host's scheme
    assert_problem(refused, 401, "not_authenticated")
    assert refused["WWW-Authenticate"] == 'Basic realm="api"'
    basic = base64.b64encode(b"ann:pw").decode()
    assert post(api, "/basic", Authorization=f"Basic {basic}").status_code == 201


@pytest.mark.usefixtures("throttle_cache")
def test_a_subclass_throttle_classes_and_scope_apply(
    api: OrdersClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # DRF binds THROTTLE_RATES when rest_framework.throttling is first imported, so
    # override_settings cannot reach it: set the rates on the class.
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", {"orders-burst": "2/min"})
    statuses = [api.call("GET", "/throttled/orders").status_code for _ in range(2)]
    throttled = api.call("GET", "/throttled/orders")

    assert statuses == [200, 200]
    assert_problem(throttled, 429, "throttled")
    assert int(throttled["Retry-After"]) > 0
    assert api.call("GET", "/orders").status_code == 200  # the package's view: no throttle


@override_settings(
    REST_FRAMEWORK={
        "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.TokenAuthentication"],
        "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    }
)
def test_the_hosts_defaults_apply_where_a_subclass_sets_none(api: OrdersClient) -> None:
    # ThrottledCollection sets throttles only: authentication and permissions are the
    # host's, read at request time.
    response = api.call("GET", "/throttled/orders")
    assert_problem(response, 401, "not_authenticated")


@override_settings(DJANGO_ORDERS={"TENANT_ACCESS_CHECK": "tests.hooks.allow_shop_1"})
def test_the_tenant_access_check_applies_whatever_a_subclass_permits() -> None:
    order = Order.objects.create(tenant_id="shop-2")
    response = OrdersClient(tenant="shop-2").call("GET", f"/unguarded/orders/{order.id}")
    assert_problem(response, 403, "tenant_forbidden")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"collection": views.OrderDetailView},
        {"detail": views.OrdersAPIView},
        {"confirm": views.OrderCloseView},
        {"close": object},
    ],
)
def test_orders_urls_takes_subclasses_of_the_routes_view_only(kwargs: dict) -> None:
    with pytest.raises(TypeError, match="needs a subclass of"):
        orders_urls(**kwargs)


def test_orders_urls_builds_the_package_routes() -> None:
    from django_orders import urls

    patterns, app_name = orders_urls()
    assert app_name == "django_orders"
    assert [(str(p.pattern), p.name) for p in patterns] == [
        (str(p.pattern), p.name) for p in urls.urlpatterns
    ]
    assert [p.callback.cls for p in patterns] == [
        views.OrderCollectionView,
        views.OrderDetailView,
        views.OrderConfirmView,
        views.OrderCloseView,
    ]


@pytest.mark.parametrize(
    ("prefix", "changed"),
    [
        ("/enveloped", lambda body, response: json.loads(body)["order"]["id"]),
        ("/relocated", lambda body, response: response["Location"].endswith("?relocated=1")),
    ],
)
def test_a_response_changed_after_the_handler_is_the_one_replayed(
    api: OrdersClient, prefix: str, changed: Any
) -> None:
    # The create stores its response with its writes; a subclass's finalize_response()
    # that answers otherwise (another response, a stored header changed) is stored instead.
    first = api.call("POST", f"{prefix}/orders", {}, headers={"Idempotency-Key": prefix})
    assert first.status_code == 201
    assert changed(first.content, first)
    replay = api.call("POST", f"{prefix}/orders", {}, headers={"Idempotency-Key": prefix})
    assert replay["Idempotent-Replayed"] == "true"
    assert replay.status_code == 201
    assert replay.content == first.content
    assert (replay["Location"], replay["ETag"]) == (first["Location"], first["ETag"])
    assert Order.objects.count() == 1


@pytest.mark.postgres
def test_a_subclass_making_its_own_created_response_claims_its_key_first() -> None:
    """The key is claimed in the writes' statement only where nothing of the host's runs
    before the writes (docs/guide/idempotency.md): a ``created_response()`` of a subclass
    is the host's."""

    class OwnResponse(views.OrderCollectionView):
        def created_response(self, request: Any, order: Any) -> Any:
            return super().created_response(request, order)

    raw = APIRequestFactory().post("/orders", {"currency": "EUR"}, format="json")
    for view_class, defers in ((views.OrderCollectionView, True), (OwnResponse, False)):
        view = view_class()
        request = view.initialize_request(raw)
        assert view.defers_idempotency_claim(request, "default") is defers
