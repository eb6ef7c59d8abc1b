"""The OpenAPI schema (docs/guide/openapi.md) is derived from what the views run.

The conformance tests generate the schema under a set of settings, then drive the real
API under the same settings into every status it answers, checking each response —
status, media type, body, headers — against the operation that describes it, and that
every documented status was answered.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.test import Client, override_settings
from rest_framework.throttling import SimpleRateThrottle

pytest.importorskip("drf_spectacular")

from django_orders.tenancy import tenant_source
from tests.openapi_conformance import Conformance, generate, operations, validate

URLCONF = "tests.urls_prefixed"

OPERATION_IDS = {
    ("/orders", "get"): "orders_list",
    ("/orders", "post"): "orders_create",
    ("/orders/{order_id}", "get"): "orders_retrieve",
    ("/orders/{order_id}/confirm", "patch"): "orders_confirm",
    ("/orders/{order_id}/close", "post"): "orders_close",
}

#: The settings variants the conformance test runs under.
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "renamed-header-no-if-match": {
        "TENANT_HEADER": "X-Shop",
        "REQUIRE_IF_MATCH": False,
        "IDEMPOTENCY_KEY_REQUIRED": False,
        "PAGE_SIZE": 3,
        "MAX_PAGE_SIZE": 7,
        "MAX_BODY_BYTES": 2048,
    },
    "locked-down": {"TENANT_ACCESS_CHECK": "tests.test_openapi.only_shop_tenants"},
}

# Documented, but only answered under concurrency (tests/test_idempotency.py and
# tests/test_concurrency.py drive them with real concurrent requests).
CONCURRENCY_ONLY = {"orders_create": {"409"}}


def only_shop_tenants(request: Any, tenant_id: str) -> bool:
    """A ``TENANT_ACCESS_CHECK``: tenants named ``shop-…`` only."""
    return tenant_id.startswith("shop-")


class OneRequestPerDay(SimpleRateThrottle):
    """One request per caller (authenticated or not) and day."""

    rate = "1/day"

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        if "X-Throttle-Me" not in request.headers:
            return None
        return f"openapi-test-{self.get_ident(request)}"


def rest_framework_for(variant: str) -> dict[str, Any]:
    base = {
        "DEFAULT_AUTHENTICATION_CLASSES": [
            "rest_framework.authentication.TokenAuthentication",
            "rest_framework.authentication.SessionAuthentication",
        ]
    }
    if variant == "locked-down":
        base["DEFAULT_PERMISSION_CLASSES"] = ["rest_framework.permissions.IsAuthenticated"]
        base["DEFAULT_THROTTLE_CLASSES"] = ["tests.test_openapi.OneRequestPerDay"]
    return base


def schema_for(variant: str, oas_version: str = "3.1.0") -> dict[str, Any]:
    with override_settings(
        DJANGO_ORDERS=VARIANTS[variant], REST_FRAMEWORK=rest_framework_for(variant)
    ):
        return generate(URLCONF, oas_version)


def param(operation: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((p for p in operation.get("parameters", []) if p["name"] == name), None)


def component(schema: dict[str, Any], ref: dict[str, Any]) -> dict[str, Any]:
    return schema["components"]["schemas"][ref["$ref"].rsplit("/", 1)[-1]]


def body_schema(schema: dict[str, Any], operation_id: str) -> dict[str, Any]:
    _path, _method, op = operations(schema)[operation_id]
    return component(schema, op["requestBody"]["content"]["application/json"]["schema"])


# -- the schema, read ---------------------------------------------------------------------


@pytest.mark.parametrize("oas_version", ["3.0.3", "3.1.0"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_the_schema_is_valid_and_generated_without_warnings(variant: str, oas_version: str) -> None:
    schema = schema_for(variant, oas_version)
    assert schema["openapi"] == oas_version
    found = {(path.removeprefix("/api/v1"), m): i for i, (path, m, _) in operations(schema).items()}
    assert found == OPERATION_IDS


def test_bodies_are_the_serializers_with_their_limits() -> None:
    schema = schema_for("default")
    create = body_schema(schema, "orders_create")
    assert create["additionalProperties"] is False
    assert create.get("required", []) == []
    total = create["properties"]["totalCents"]
    assert total["type"] == "integer"  # not nullable: null is a 400
    assert (total["minimum"], total["maximum"]) == (0, 2**63 - 1)
    assert create["properties"]["currency"]["pattern"] == "^[A-Z]{3}$"
    metadata = create["properties"]["metadata"]
    assert metadata["maxProperties"] == 50
    no_nul = "^[^\\u0000]*$"
    assert metadata["propertyNames"] == {"minLength": 1, "maxLength": 40, "pattern": no_nul}
    assert metadata["additionalProperties"] == {
        "type": "string",
        "maxLength": 500,
        "pattern": no_nul,
    }

    confirm = body_schema(schema, "orders_confirm")
    assert confirm["required"] == ["totalCents"]
    assert confirm["additionalProperties"] is False
    _p, _m, confirm_op = operations(schema)["orders_confirm"]
    assert confirm_op["requestBody"]["required"] is True

    _p, _m, close_op = operations(schema)["orders_close"]
    assert close_op["requestBody"]["required"] is False
    close = body_schema(schema, "orders_close")
    assert close["additionalProperties"] is False
    assert "properties" not in close

    order = schema["components"]["schemas"]["Order"]
    assert order["properties"]["totalCents"]["type"] == ["integer", "null"]
    assert set(order["required"]) == set(order["properties"])


def test_problems_are_problem_json_with_their_members() -> None:
    schema = schema_for("default")
    problem = schema["components"]["schemas"]["Problem"]
    assert {"errors", "currentVersion", "currentStatus"} <= set(problem["properties"])
    for operation_id, (_path, _method, op) in operations(schema).items():
        for status, response in op["responses"].items():
            if int(status) >= 400:
                assert list(response["content"]) == ["application/problem+json"], operation_id
                for example in response["content"]["application/problem+json"]["examples"].values():
                    validate(
                        response["content"]["application/problem+json"]["schema"],
                        example["value"],
                        schema,
                    )
                    assert example["value"]["status"] == int(status)


def test_parameters_follow_the_settings_in_force() -> None:
    default = operations(schema_for("default"))
    renamed = operations(schema_for("renamed-header-no-if-match"))
    for operation_id in default:
        assert param(default[operation_id][2], "X-Tenant-Id")["required"] is True
        assert param(renamed[operation_id][2], "X-Tenant-Id") is None
        assert param(renamed[operation_id][2], "X-Shop")["required"] is True
    assert param(default["orders_create"][2], "Idempotency-Key")["required"] is True
    assert param(renamed["orders_create"][2], "Idempotency-Key")["required"] is False
    assert param(default["orders_confirm"][2], "If-Match")["required"] is True
    assert param(renamed["orders_confirm"][2], "If-Match")["required"] is False
    assert "428" in default["orders_confirm"][2]["responses"]
    assert "428" not in renamed["orders_close"][2]["responses"]
    assert param(default["orders_list"][2], "limit")["schema"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 100,
        "default": 20,
    }
    assert param(renamed["orders_list"][2], "limit")["schema"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 7,
        "default": 3,
    }
    assert "2048 bytes" in renamed["orders_create"][2]["requestBody"]["description"]


def test_the_read_your_writes_cookie_is_declared_with_replicas_only() -> None:
    # docs/guide/openapi.md: response headers are declared where the API sends them; a 2xx
    # write sets the read-your-writes cookie when READ_REPLICAS are configured.
    without = operations(schema_for("default"))
    with override_settings(
        DJANGO_ORDERS={"READ_REPLICAS": ["replica"]}, REST_FRAMEWORK=rest_framework_for("default")
    ):
        replicas = operations(generate(URLCONF, "3.1.0"))
    for operation_id, status in [
        ("orders_create", "201"),
        ("orders_confirm", "200"),
        ("orders_close", "200"),
    ]:
        assert "Set-Cookie" not in without[operation_id][2]["responses"][status]["headers"]
        cookie = replicas[operation_id][2]["responses"][status]["headers"]["Set-Cookie"]
        assert "django_orders_read_primary" in cookie["description"]
        assert cookie["required"] is True  # every 2xx write, a replayed one too
    for operation_id in ("orders_list", "orders_retrieve"):
        assert "Set-Cookie" not in replicas[operation_id][2]["responses"]["200"].get("headers", {})


@tenant_source("the authenticated user's username")
def username_tenant(request: Any) -> str | None:
    """A ``TENANT_RESOLVER`` deriving the tenant from the user: no header is read."""
    return request.user.username or None


def test_a_tenant_derived_from_the_user_has_no_header_parameter() -> None:
    with override_settings(DJANGO_ORDERS={"TENANT_RESOLVER": "tests.test_openapi.username_tenant"}):
        schema = generate(URLCONF)
    for operation_id, (_path, _method, op) in operations(schema).items():
        assert all(p["in"] != "header" or p["name"] != "X-Tenant-Id" for p in op["parameters"])
        assert "The tenant is" in op["description"], operation_id


def test_host_authentication_permissions_and_throttles_are_described() -> None:
    plain = operations(schema_for("default"))
    locked = operations(schema_for("locked-down"))
    assert "401" in plain["orders_list"][2]["responses"]  # a bad token
    assert "403" not in plain["orders_list"][2]["responses"]
    assert "403" in plain["orders_create"][2]["responses"]  # a session without CSRF token
    assert "429" not in plain["orders_list"][2]["responses"]
    responses = locked["orders_list"][2]["responses"]
    assert {"401", "403", "429"} <= set(responses)
    assert responses["429"]["headers"]["Retry-After"]["required"] is True
    codes = responses["403"]["content"]["application/problem+json"]["examples"]
    assert {"tenant_forbidden", "permission_denied"} <= set(codes)
    with override_settings(REST_FRAMEWORK={"DEFAULT_AUTHENTICATION_CLASSES": []}):
        bare = generate(URLCONF)
    for _operation_id, (_path, _method, op) in operations(bare).items():
        assert "security" not in op
        assert not {"401", "403", "429"} & set(op["responses"])
    assert "securitySchemes" not in bare.get("components", {})


# -- the schema, against the API ----------------------------------------------------------


def tenant_headers(settings: dict[str, Any], tenant: str = "shop-1") -> dict[str, str]:
    return {settings.get("TENANT_HEADER", "X-Tenant-Id"): tenant}


def exercise(c: Conformance, settings: dict[str, Any], variant: str) -> None:
    """Drive every operation into every status it can answer without concurrency."""
    tenant = tenant_headers(settings)
    limit = settings.get("MAX_BODY_BYTES", 65536)
    key_required = settings.get("IDEMPOTENCY_KEY_REQUIRED", True)
    if_match_required = settings.get("REQUIRE_IF_MATCH", True)

    def key() -> dict[str, str]:
        return {**tenant, "Idempotency-Key": str(uuid.uuid4())}

    first_key = key()
    created = c.send("orders_create", headers=first_key, body={"totalCents": 5})
    assert created.status_code == 201
    replay = c.send("orders_create", headers=first_key, body={"totalCents": 5})
    assert replay.headers["Idempotent-Replayed"] == "true"
    order_id = created.json()["id"]
    c.send("orders_create", headers=first_key, body={"totalCents": 6})  # 422
    assert c.send("orders_create", headers=key(), body={"status": "x"}).status_code == 400
    c.send("orders_create", headers=key(), raw="{")
    c.send("orders_create", headers={**tenant, "Idempotency-Key": ""}, body={})
    if key_required:
        c.send("orders_create", headers=tenant, body={})
    c.send("orders_create", headers=key(), raw="x" * (limit + 1))  # 413
    c.send("orders_create", headers=key(), raw="{}", content_type="text/plain")  # 415
    c.send(
        "orders_create", headers=key(), raw="", HTTP_TRANSFER_ENCODING="chunked", CONTENT_LENGTH=""
    )  # 411
    c.send("orders_create", headers={"Idempotency-Key": "k"}, body={})  # missing tenant
    c.send("orders_create", method="delete", headers=tenant)  # 405, on both operations

    # The list: a next page with its Link, then each refusal.
    c.send("orders_create", headers=key(), body={})
    page = c.send("orders_list", headers=tenant, query="limit=1")
    assert page.headers["Link"].endswith('; rel="next"')
    c.send("orders_list", headers=tenant, query="limit=0")
    c.send("orders_list", headers=tenant, query="status=nope")
    c.send("orders_list", headers=tenant, query="cursor=abc")
    c.send("orders_list", headers={**tenant, settings.get("TENANT_HEADER", "X-Tenant-Id"): "a b"})

    # One order.
    got = c.send("orders_retrieve", order_id=order_id, headers=tenant)
    c.send("orders_retrieve", order_id=order_id, headers={**tenant, "If-None-Match": got["ETag"]})
    c.send("orders_retrieve", order_id=str(uuid.uuid4()), headers=tenant)
    c.send("orders_retrieve", order_id="not-a-uuid", headers=tenant)
    c.send("orders_retrieve", order_id=order_id, method="put", headers=tenant)  # 405

    # Confirm and close.
    for operation_id in ("orders_confirm", "orders_close"):
        c.send(operation_id, order_id=str(uuid.uuid4()), headers={**tenant, "If-Match": '"1"'})
        c.send(operation_id, order_id=order_id, headers={**tenant, "If-Match": "abc"})
        c.send(operation_id, order_id=order_id, headers={**tenant, "If-Match": '"9"'})
        if if_match_required:
            c.send(operation_id, order_id=order_id, headers=tenant, body={"totalCents": 1})
        c.send(
            operation_id,
            order_id=order_id,
            headers={**key(), "If-Match": "*"},
            raw="x" * (limit + 1),
        )
        c.send(
            operation_id,
            order_id=order_id,
            headers={**key(), "If-Match": "*"},
            raw="{}",
            content_type="text/plain",
        )
        c.send(
            operation_id,
            order_id=order_id,
            headers={**key(), "If-Match": "*"},
            raw="",
            HTTP_TRANSFER_ENCODING="chunked",
            CONTENT_LENGTH="",
        )
        c.send(
            operation_id,
            order_id=order_id,
            headers={**tenant, "If-Match": "*"},
            body={"unknown": 1},
        )
        c.send(operation_id, order_id=order_id, headers={**tenant, "Idempotency-Key": " "})
        c.send(operation_id, order_id=order_id, method="get", headers=tenant)  # 405
    c.send("orders_close", order_id=order_id, headers={**tenant, "If-Match": '"1"'})  # 409
    confirm_key = key()
    confirmed = c.send(
        "orders_confirm",
        order_id=order_id,
        headers={**confirm_key, "If-Match": '"1"'},
        body={"totalCents": 10},
    )
    assert confirmed.status_code == 200
    c.send(
        "orders_confirm",
        order_id=order_id,
        headers={**confirm_key, "If-Match": '"1"'},
        body={"totalCents": 11},
    )  # 422: the key with another request
    c.send(
        "orders_confirm",
        order_id=order_id,
        headers={**tenant, "If-Match": '"2"'},
        body={"totalCents": 10},
    )  # 409: not a draft
    close_key = key()
    closed = c.send("orders_close", order_id=order_id, headers={**close_key, "If-Match": '"2"'})
    assert closed.status_code == 200
    c.send(
        "orders_close", order_id=order_id, headers={**close_key, "If-Match": '"2"'}, body={}
    )  # replayed: {} and no body are the same request
    c.send(
        "orders_close", order_id=order_id, headers={**close_key, "If-Match": '"3"'}, body={"x": 1}
    )  # 422: the key with another body

    for operation_id in c.operations:  # no tenant
        c.send(operation_id, order_id=order_id, headers={"If-Match": "*"})

    # The host's authentication: a bad token is a 401 with its challenge; a session without
    # its CSRF token a 403.
    for operation_id in c.operations:
        c.send(operation_id, order_id=order_id, headers={**key(), "Authorization": "Token x"})
    user = get_user_model().objects.create_user(f"u-{uuid.uuid4().hex[:8]}", password="pw")
    session = Client(enforce_csrf_checks=True)
    session.force_login(user)
    for operation_id in ("orders_create", "orders_confirm", "orders_close"):
        c.send(
            operation_id,
            order_id=order_id,
            headers={**key(), "If-Match": "*"},
            body={},
            client=session,
        )
    if variant == "locked-down":
        anonymous = Client()
        c.send("orders_list", headers=tenant, client=anonymous)  # 401: IsAuthenticated
        for operation_id in c.operations:
            cache.clear()
            c.send(
                operation_id, order_id=order_id, headers=tenant_headers(settings, "other")
            )  # 403 tenant_forbidden
            cache.clear()
            for _ in range(2):  # the second is throttled
                c.send(
                    operation_id,
                    order_id=order_id,
                    headers={**key(), "If-Match": "*", "X-Throttle-Me": "1"},
                )
        cache.clear()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_response_conforms_and_every_documented_status_is_answered(variant: str) -> None:
    settings = VARIANTS[variant]
    schema = schema_for(variant)
    conformance = Conformance(schema)
    cache.clear()
    with override_settings(
        ROOT_URLCONF=URLCONF, DJANGO_ORDERS=settings, REST_FRAMEWORK=rest_framework_for(variant)
    ):
        if variant == "locked-down":
            user = get_user_model().objects.create_user("owner", password="pw")
            conformance.client.force_login(user)
        exercise(conformance, settings, variant)
    assert conformance.unanswered() == CONCURRENCY_ONLY


@pytest.mark.django_db(transaction=True)
def test_the_examples_succeed_when_sent() -> None:
    """What Swagger UI's "Try it out" sends, prefilled from the examples."""
    schema = generate(URLCONF)
    ops = operations(schema)
    conformance = Conformance(schema)

    def example_headers(operation_id: str) -> dict[str, str]:
        op = ops[operation_id][2]
        return {
            p["name"]: p["example"]
            for p in op["parameters"]
            if p["in"] == "header" and "example" in p
        }

    def example_body(operation_id: str) -> Any:
        return ops[operation_id][2]["requestBody"]["content"]["application/json"]["example"]

    with override_settings(ROOT_URLCONF=URLCONF):
        created = conformance.send(
            "orders_create",
            headers=example_headers("orders_create"),
            body=example_body("orders_create"),
        )
        assert created.status_code == 201, created.content
        order_id = created.json()["id"]
        for operation_id in ("orders_list", "orders_retrieve", "orders_confirm", "orders_close"):
            body = (
                example_body(operation_id)
                if operation_id in ("orders_confirm", "orders_close")
                else None
            )
            response = conformance.send(
                operation_id, order_id=order_id, body=body, headers=example_headers(operation_id)
            )
            assert response.status_code in (200, 304), (operation_id, response.content)
    order = schema["components"]["schemas"]["Order"]
    validate(order, order["example"], schema)


def test_a_hosts_subclasses_mounted_with_orders_urls_keep_the_description(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests import docs_snippets

    # The subclassing recipe of docs/guide/tenancy.md, as a host would mount it.
    docs_snippets.install(monkeypatch, "myproject.api", "guide/tenancy.md", "api-subclasses")
    docs_snippets.install(monkeypatch, "myproject.urls", "guide/tenancy.md", "urls-subclasses")
    schema = generate("myproject.urls")
    found = {(path.removeprefix("/api"), m): i for i, (path, m, _) in operations(schema).items()}
    assert found == OPERATION_IDS
    # The subclass's own authentication is what the description says.
    create = schema["paths"]["/api/orders"]["post"]
    assert create["security"] == [{"tokenAuth": []}]
