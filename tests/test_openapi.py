"""docs/api/README.md: an OpenAPI 3 schema of the endpoints through drf-spectacular."""

import pytest
from django.test import override_settings

pytest.importorskip("drf_spectacular")

from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema


def schema_without_warnings(urlconf: str) -> dict:
    """The OpenAPI schema of ``urlconf``, valid, and generated without warnings or errors."""
    GENERATOR_STATS.reset()
    schema = SchemaGenerator(urlconf=urlconf).get_schema(request=None, public=True)
    validate_schema(schema)
    assert not GENERATOR_STATS._warn_cache, GENERATOR_STATS._warn_cache
    assert not GENERATOR_STATS._error_cache, GENERATOR_STATS._error_cache
    return schema


def operation_ids(schema: dict, prefix: str) -> dict[tuple[str, str], str]:
    operations = {
        (path.removeprefix(prefix), method): op["operationId"]
        for path, methods in schema["paths"].items()
        for method, op in methods.items()
    }
    assert all(path.startswith(prefix) for path in schema["paths"])
    return operations


OPERATION_IDS = {
    ("/orders", "get"): "orders_list",
    ("/orders", "post"): "orders_create",
    ("/orders/{order_id}", "get"): "orders_retrieve",
    ("/orders/{order_id}/confirm", "patch"): "orders_confirm",
    ("/orders/{order_id}/close", "post"): "orders_close",
}


@override_settings(REST_FRAMEWORK={"DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema"})
def test_schema_describes_every_endpoint_without_warnings() -> None:
    schema = schema_without_warnings("tests.urls_prefixed")
    paths = schema["paths"]
    assert operation_ids(schema, "/api/v1") == OPERATION_IDS
    create = paths["/api/v1/orders"]["post"]
    assert {p["name"] for p in create["parameters"]} == {"X-Tenant-Id", "Idempotency-Key"}
    assert set(create["responses"]) >= {"201", "400", "409", "422"}
    confirm = paths["/api/v1/orders/{order_id}/confirm"]["patch"]
    assert {"412", "428"} <= set(confirm["responses"])


@override_settings(REST_FRAMEWORK={"DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema"})
def test_a_hosts_subclasses_mounted_with_orders_urls_keep_the_description(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests import docs_snippets

    # The subclassing recipe of docs/guide/tenancy.md, as a host would mount it.
    docs_snippets.install(monkeypatch, "myproject.api", "guide/tenancy.md", "api-subclasses")
    docs_snippets.install(monkeypatch, "myproject.urls", "guide/tenancy.md", "urls-subclasses")
    schema = schema_without_warnings("myproject.urls")
    assert operation_ids(schema, "/api") == OPERATION_IDS
    # The subclass's own authentication is what the description says.
    create = schema["paths"]["/api/orders"]["post"]
    assert create["security"] == [{"tokenAuth": []}]
