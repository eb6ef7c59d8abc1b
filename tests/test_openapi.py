"""docs/api/README.md: an OpenAPI 3 schema of the endpoints through drf-spectacular."""

import pytest
from django.test import override_settings

pytest.importorskip("drf_spectacular")

from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema


@override_settings(REST_FRAMEWORK={"DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema"})
def test_schema_describes_every_endpoint_without_warnings() -> None:
    GENERATOR_STATS.reset()
    schema = SchemaGenerator(urlconf="tests.urls_prefixed").get_schema(request=None, public=True)
    validate_schema(schema)
    assert not GENERATOR_STATS._warn_cache, GENERATOR_STATS._warn_cache
    assert not GENERATOR_STATS._error_cache, GENERATOR_STATS._error_cache
    paths = schema["paths"]
    operations = {
        (path, method): op["operationId"]
        for path, methods in paths.items()
        for method, op in methods.items()
    }
    assert operations == {
        ("/api/v1/orders", "get"): "orders_list",
        ("/api/v1/orders", "post"): "orders_create",
        ("/api/v1/orders/{order_id}", "get"): "orders_retrieve",
        ("/api/v1/orders/{order_id}/confirm", "patch"): "orders_confirm",
        ("/api/v1/orders/{order_id}/close", "post"): "orders_close",
    }
    create = paths["/api/v1/orders"]["post"]
    assert {p["name"] for p in create["parameters"]} == {"X-Tenant-Id", "Idempotency-Key"}
    assert set(create["responses"]) >= {"201", "400", "409", "422"}
    confirm = paths["/api/v1/orders/{order_id}/confirm"]["patch"]
    assert {"412", "428"} <= set(confirm["responses"])
