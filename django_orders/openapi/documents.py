"""The schemas of what the API answers: the order, a page of orders, a problem.

The order is what :meth:`AbstractOrder.to_dict` renders, so its members are read from a
``to_dict()`` of the order model in force (the host's, when it swapped the model): the
package's members have their documented types and limits, and each member the host adds
is described by the model field it renders (``customerId`` from ``customer_id``), else as
any JSON value.
"""

from __future__ import annotations

import re
from typing import Any

from django.db import models
from drf_spectacular.plumbing import ResolvedComponent, append_meta, is_jsonschema_compliant
from rest_framework import serializers

from django_orders.conf import orders_settings
from django_orders.models import AbstractOrder, get_order_model
from django_orders.serializers import (
    CURRENCY_PATTERN,
    MAX_METADATA_KEY_LENGTH,
    MAX_METADATA_KEYS,
    MAX_METADATA_VALUE_LENGTH,
    MAX_TOTAL_CENTS,
    STATUS_VALUES,
)

ORDER = "Order"
ORDER_STATUS = "OrderStatus"
ORDER_PAGE = "OrderPage"
PROBLEM = "Problem"

#: An order as the API shows it, for the examples (docs/api/README.md).
ORDER_EXAMPLE: dict[str, Any] = {
    "id": "0195a3c6-e2f4-7c1d-9b6a-8e0f1d2c3b4a",
    "tenantId": "shop-1",
    "status": "draft",
    "version": 1,
    "totalCents": 1250,
    "currency": "EUR",
    "metadata": {"ref": "A-17"},
    "createdAt": "2026-03-01T12:00:00.123456Z",
    "updatedAt": "2026-03-01T12:00:00.123456Z",
    "confirmedAt": None,
    "closedAt": None,
}


#: No NUL character (PostgreSQL can store none; the parser refuses it anywhere).
NO_NUL = "^[^\\u0000]*$"


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` or null, as the OpenAPI version in force writes it (3.0 ``nullable``,
    3.1 a type list)."""
    return append_meta(schema, {"nullable": True})


def timestamp() -> dict[str, Any]:
    return {
        "type": "string",
        "format": "date-time",
        "description": "RFC 3339, UTC, microseconds, `Z`.",
    }


def metadata_schema() -> dict[str, Any]:
    """``metadata``: the limits :class:`~django_orders.serializers.MetadataField` checks."""
    schema: dict[str, Any] = {
        "type": "object",
        "maxProperties": MAX_METADATA_KEYS,
        "additionalProperties": {
            "type": "string",
            "maxLength": MAX_METADATA_VALUE_LENGTH,
            "pattern": NO_NUL,
        },
        "description": f"String to string; at most {MAX_METADATA_KEYS} keys of 1 to "
        f"{MAX_METADATA_KEY_LENGTH} characters, values of at most "
        f"{MAX_METADATA_VALUE_LENGTH}; no NUL character.",
    }
    if is_jsonschema_compliant():  # OpenAPI 3.1: JSON Schema 2020-12 has propertyNames
        schema["propertyNames"] = {
            "minLength": 1,
            "maxLength": MAX_METADATA_KEY_LENGTH,
            "pattern": NO_NUL,
        }
    return schema


def currency_schema() -> dict[str, Any]:
    """``currency``: :data:`~django_orders.serializers.CURRENCY_PATTERN`, the check of the
    package's serializers, as a JSON Schema pattern (``\\A`` / ``\\Z`` as ``^`` / ``$``)."""
    pattern = CURRENCY_PATTERN.pattern.replace("\\A", "^").replace("\\Z", "$")
    return {
        "type": "string",
        "pattern": pattern,
        "description": "ISO 4217 alphabetic code: three uppercase letters.",
    }


def total_cents_schema() -> dict[str, Any]:
    return {"type": "integer", "format": "int64", "minimum": 0, "maximum": MAX_TOTAL_CENTS}


def status_ref(auto_schema: Any) -> dict[str, Any]:
    """A reference to the ``OrderStatus`` enum (one component wherever a status is)."""
    schema = {"type": "string", "enum": list(STATUS_VALUES)}
    return _register(auto_schema, ORDER_STATUS, schema)


def package_members(auto_schema: Any) -> dict[str, dict[str, Any]]:
    """The members of :meth:`AbstractOrder.to_dict`, with their types and limits."""
    return {
        "id": {"type": "string", "format": "uuid", "description": "Time-ordered (UUIDv7)."},
        "tenantId": {"type": "string", "description": "The tenant it was created for."},
        "status": status_ref(auto_schema),
        "version": {
            "type": "integer",
            "minimum": 1,
            "description": 'Starts at 1, +1 on every change; the ETag is `"<version>"`.',
        },
        "totalCents": nullable(total_cents_schema()),
        "currency": {
            **currency_schema(),
            "description": f"ISO 4217; `{orders_settings.DEFAULT_CURRENCY}` unless given.",
        },
        "metadata": {**metadata_schema(), "description": "Answered with its keys sorted."},
        "createdAt": timestamp(),
        "updatedAt": timestamp(),
        "confirmedAt": nullable(timestamp()),
        "closedAt": nullable(timestamp()),
    }


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _model_field(model: type[models.Model], member: str) -> models.Field | None:
    """The concrete field ``member`` renders: by name or attname, as is or snake_case."""
    candidates = {member, _snake(member)}
    for field in model._meta.concrete_fields:
        if field.name in candidates or field.attname in candidates:
            return field
    return None


def host_members() -> tuple[dict[str, serializers.Field], dict[str, Any]]:
    """The members a swapped order model adds to ``to_dict()``: as serializer fields, and
    with the values a new order has (for the example)."""
    model = get_order_model()
    package = set(AbstractOrder.to_dict(model()))
    try:
        document = model().to_dict()
    except Exception:  # a to_dict() that needs a saved row: no host member is known
        document = {}
    fields: dict[str, serializers.Field] = {}
    for member in document:
        if member in package:
            continue
        model_field = _model_field(model, member)
        if model_field is not None:
            meta = type("Meta", (), {"model": model, "fields": [model_field.name]})
            host = type("HostFields", (serializers.ModelSerializer,), {"Meta": meta})()
            fields[member] = host.fields[model_field.name]
        else:
            fields[member] = serializers.JSONField(help_text="A member of the host's to_dict().")
    return fields, {name: document[name] for name in fields}


def order_component(auto_schema: Any) -> dict[str, Any]:
    """Register the ``Order`` schema; return a reference to it."""
    properties = package_members(auto_schema)
    fields, example = host_members()
    for name, field in fields.items():
        schema = auto_schema._map_serializer_field(field, "response")
        schema.pop("readOnly", None)
        properties[name] = schema
    schema = {
        "type": "object",
        "description": "An order (docs/api/README.md). Clients ignore members they do not know.",
        "properties": properties,
        "required": list(properties),
        "example": {**ORDER_EXAMPLE, **example},
    }
    return _register(auto_schema, ORDER, schema)


def order_page_component(auto_schema: Any, order_ref: dict[str, Any]) -> dict[str, Any]:
    """Register the ``OrderPage`` schema (the paginator's shape); return a reference."""
    from django_orders.pagination import KeysetPagination

    schema = KeysetPagination().get_paginated_response_schema({"type": "array", "items": order_ref})
    cursor = schema["properties"]["nextCursor"]
    if cursor.pop("nullable", False):
        schema["properties"]["nextCursor"] = nullable(cursor)
    schema["description"] = "A page of the tenant's orders, newest first."
    return _register(auto_schema, ORDER_PAGE, schema)


def problem_component(auto_schema: Any) -> dict[str, Any]:
    """Register the ``Problem`` schema (RFC 9457 with the package's members)."""
    schema = {
        "type": "object",
        "description": "RFC 9457 problem details; `code` is the stable member to branch on. "
        "A host rule may add members of its own.",
        "properties": {
            "type": {"type": "string", "description": "Always `about:blank`."},
            "title": {"type": "string", "description": "The HTTP reason phrase."},
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": {"type": "string"},
            "code": {"type": "string", "description": "Stable, machine-readable."},
            "errors": {
                "type": "object",
                "description": "`validation_error` and `invalid_filter`: the messages by "
                "member or parameter, as DRF shapes them.",
                "additionalProperties": {},
            },
            "currentVersion": {
                "type": "integer",
                "minimum": 1,
                "description": "`version_mismatch`: the order's current version.",
            },
            # `invalid_transition`: the order's current status.
            "currentStatus": status_ref(auto_schema),
        },
        "required": ["type", "title", "status", "detail", "code"],
    }
    return _register(auto_schema, PROBLEM, schema)


def _register(auto_schema: Any, name: str, schema: dict[str, Any]) -> dict[str, Any]:
    component = ResolvedComponent(
        name=name, type=ResolvedComponent.SCHEMA, object=f"django_orders.{name}", schema=schema
    )
    auto_schema.registry.register_on_missing(component)
    return auto_schema.registry[component].ref
