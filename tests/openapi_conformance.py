"""Checks real responses against the OpenAPI schema the package generates.

:class:`Conformance` sends requests to the API through Django's test client and checks
each response against the operation that describes it: the status is documented, the
media type is the documented one, the body validates against the documented schema
(JSON Schema 2020-12, so the schema is generated as OpenAPI 3.1), every required header
is there and every documented header's value matches its schema. It records which status
each operation answered, so a test can compare them with what the schema documents.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import jsonschema
from django.test import Client
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from drf_spectacular.settings import patched_settings
from drf_spectacular.validation import validate_schema


def generate(urlconf: str, oas_version: str = "3.1.0") -> dict[str, Any]:
    """The schema of ``urlconf`` as JSON, valid, generated without warnings or errors."""
    GENERATOR_STATS.reset()
    with patched_settings({"OAS_VERSION": oas_version}):
        schema = SchemaGenerator(urlconf=urlconf).get_schema(request=None, public=True)
        validate_schema(schema)
    assert not GENERATOR_STATS._warn_cache, GENERATOR_STATS._warn_cache
    assert not GENERATOR_STATS._error_cache, GENERATOR_STATS._error_cache
    return json.loads(OpenApiJsonRenderer().render(schema))


def operations(schema: dict[str, Any]) -> dict[str, tuple[str, str, dict[str, Any]]]:
    """``operationId`` → (path, method, operation)."""
    return {
        op["operationId"]: (path, method, op)
        for path, methods in schema["paths"].items()
        for method, op in methods.items()
    }


def validate(schema: dict[str, Any], instance: Any, document: dict[str, Any]) -> None:
    """Validate ``instance`` against ``schema``, whose ``$ref`` point into ``document``."""
    rooted = {**schema, "components": document.get("components", {})}
    jsonschema.Draft202012Validator(
        rooted, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    ).validate(instance)


class Conformance:
    """Sends requests and checks each response against the schema."""

    def __init__(self, schema: dict[str, Any], client: Client | None = None) -> None:
        self.schema = schema
        self.operations = operations(schema)
        self.client = client or Client()
        self.answered: dict[str, set[str]] = defaultdict(set)

    def send(
        self,
        operation_id: str,
        *,
        order_id: str | None = None,
        method: str | None = None,
        headers: dict[str, str] | None = None,
        query: str = "",
        body: Any = None,
        raw: bytes | str | None = None,
        content_type: str = "application/json",
        client: Client | None = None,
        **extra: Any,
    ) -> Any:
        """Send a request to the path of ``operation_id`` (with ``method``, its own by
        default) and check the answer against that operation (or, for another method,
        against every operation of the path)."""
        path, own_method, _ = self.operations[operation_id]
        url = path.replace("{order_id}", order_id or "") + (f"?{query}" if query else "")
        data: Any = raw if raw is not None else ("" if body is None else json.dumps(body))
        response = (client or self.client).generic(
            (method or own_method).upper(),
            url,
            data,
            content_type=content_type,
            headers=headers or {},
            **extra,
        )
        if method is None or method.lower() == own_method:
            self.check(operation_id, response)
        else:
            for other_id, (other_path, _m, _op) in self.operations.items():
                if other_path == path:
                    self.check(other_id, response)
        return response

    def check(self, operation_id: str, response: Any) -> None:
        _path, _method, operation = self.operations[operation_id]
        status = str(response.status_code)
        where = f"{operation_id} answered {status}: {response.content[:300]!r}"
        assert status in operation["responses"], f"undocumented status: {where}"
        self.answered[operation_id].add(status)
        documented = operation["responses"][status]
        for name, header in documented.get("headers", {}).items():
            value = response.headers.get(name)
            if value is None:
                assert not header.get("required"), f"{name} missing: {where}"
                continue
            validate(header["schema"], value, self.schema)
        content = documented.get("content")
        if not content:
            assert response.content == b"", f"a body where none is documented: {where}"
            return
        media_type = response.headers["Content-Type"].split(";")[0].strip()
        assert media_type in content, f"{media_type} is not documented: {where}"
        validate(content[media_type]["schema"], json.loads(response.content), self.schema)

    def unanswered(self) -> dict[str, set[str]]:
        """The statuses each operation documents but was not seen answering."""
        return {
            operation_id: set(op["responses"]) - self.answered[operation_id]
            for operation_id, (_path, _method, op) in self.operations.items()
            if set(op["responses"]) - self.answered[operation_id]
        }
