"""The request headers and path parameters of the operations, as the settings in force
make them: the tenant header (its name and pattern, or none), ``Idempotency-Key``,
``If-Match`` (required or not), ``If-None-Match``, the order id."""

from __future__ import annotations

from typing import Any

from django_orders.conf import orders_settings
from django_orders.tenancy import TENANT_ID_MAX_LENGTH, header_tenant_resolver

# One example key per operation: a key sent with another request is a 422.
IDEMPOTENCY_KEY_EXAMPLES = {
    "orders_create": "8e03978e-40d5-43e8-bc93-6894a57f9324",
    "orders_confirm": "0b1e6f3a-5c2d-4e8f-9a7b-3d4c5e6f7a8b",
    "orders_close": "6f1d2c3b-4a5e-4f60-8b7a-9c8d7e6f5a4b",
}
# The key as parse_key() accepts it: printable ASCII, not starting with a quote (an RFC
# 8941 string is accepted too, but a generated one is easily malformed) or a space.
IDEMPOTENCY_KEY_PATTERN = "^[!#-~][ -~]{0,254}$"
_ETAG = '(?:W/)?"[!#-~]*"|[0-9]+'
# RFC 9110 §13.1.1: "*" or a list of entity-tags (bare digits too, as older clients send).
IF_MATCH_PATTERN = f"^(?:\\*|(?:{_ETAG})(?:[ \\t]*,[ \\t]*(?:{_ETAG}))*)$"


def reads_tenant_header() -> bool:
    """Whether the tenant is read from ``TENANT_HEADER`` (else the host derives it)."""
    return orders_settings.TENANT_RESOLVER is header_tenant_resolver


def tenant() -> list[dict[str, Any]]:
    """The tenant header, when the tenant is read from one."""
    if not reads_tenant_header():
        return []
    pattern = orders_settings.TENANT_ID_PATTERN
    pattern = getattr(pattern, "pattern", pattern)
    return [
        {
            "name": orders_settings.TENANT_HEADER,
            "in": "header",
            "required": True,
            "description": "The tenant the request acts for.",
            "schema": {"type": "string", "maxLength": TENANT_ID_MAX_LENGTH, "pattern": pattern},
            "example": "shop-1",
        }
    ]


def idempotency_key(operation_id: str, *, required: bool) -> dict[str, Any]:
    return {
        "name": "Idempotency-Key",
        "in": "header",
        "required": required,
        "description": "1–255 printable ASCII characters (a bare token, or an RFC 8941 "
        "string). A retry with the same key and request answers the stored response; "
        "the same key with another request is 422.",
        "schema": {"type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN},
        "example": IDEMPOTENCY_KEY_EXAMPLES[operation_id],
    }


def if_match(operation_id: str) -> dict[str, Any]:
    return {
        "name": "If-Match",
        "in": "header",
        "required": bool(orders_settings.REQUIRE_IF_MATCH),
        "description": 'The ETag of the version you read, e.g. `"1"` (also bare digits, '
        'a list, or `*`). Strong comparison: `W/"1"` never matches.',
        "schema": {"type": "string", "pattern": IF_MATCH_PATTERN},
        # The version a new draft has, and the one a confirmed order has.
        "example": '"1"' if operation_id == "orders_confirm" else '"2"',
    }


def if_none_match() -> dict[str, Any]:
    return {
        "name": "If-None-Match",
        "in": "header",
        "required": False,
        "description": "ETags you hold (weak comparison); a match answers 304. A "
        "malformed value never matches.",
        "schema": {"type": "string"},
        "example": '"1"',
    }


def order_id() -> dict[str, Any]:
    return {
        "name": "order_id",
        "in": "path",
        "required": True,
        "description": "The order's id; anything but a UUID is a 404 like a missing order.",
        "schema": {"type": "string", "format": "uuid"},
    }
