"""Input validation of the orders API (docs/api/README.md).

The serializers validate request bodies only; the JSON an order is shown as comes from
:meth:`Order.to_dict`, the same document the events carry. They are strict where DRF is
lenient: ``"12"``, ``12.0`` and ``true`` are not integers, ``123`` is not a string, and a
field the endpoint does not take (unknown, or one of the order's read-only fields) is a
400 ``validation_error`` rather than silently ignored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from rest_framework import serializers

MAX_TOTAL_CENTS = 2**63 - 1  # a PostgreSQL bigint
MAX_METADATA_KEYS = 50
MAX_METADATA_KEY_LENGTH = 40
MAX_METADATA_VALUE_LENGTH = 500
CURRENCY_PATTERN = re.compile(r"\A[A-Z]{3}\Z")  # ISO 4217 alphabetic code

# Members of the order document (docs/api/README.md) that a client can never set.
READ_ONLY_FIELDS = frozenset(
    {"id", "tenantId", "status", "version", "createdAt", "updatedAt", "confirmedAt", "closedAt"}
)


class StrictIntegerField(serializers.IntegerField):
    """An integer that must be a JSON integer: no strings, floats or booleans."""

    default_error_messages = {"invalid": "A valid integer is required."}

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictCharField(serializers.CharField):
    """A string that must be a JSON string (DRF would turn ``123`` into ``"123"``).

    DRF's ``CharField`` already refuses NUL characters, which PostgreSQL's ``jsonb`` and
    ``text`` cannot hold.
    """

    default_error_messages = {"invalid": "Not a valid string."}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class MetadataField(serializers.DictField):
    """``metadata``: string → string, ≤ 50 keys, key 1-40 chars, value ≤ 500, no NUL."""

    default_error_messages = {
        "too_many_keys": f"At most {MAX_METADATA_KEYS} keys are allowed.",
        "invalid_key": f"Keys must be 1 to {MAX_METADATA_KEY_LENGTH} characters without NUL.",
    }

    def __init__(self, **kwargs: Any) -> None:
        child = StrictCharField(
            max_length=MAX_METADATA_VALUE_LENGTH, allow_blank=True, trim_whitespace=False
        )
        super().__init__(child=child, **kwargs)

    def to_internal_value(self, data: Any) -> dict[str, str]:
        if isinstance(data, Mapping):
            if len(data) > MAX_METADATA_KEYS:
                self.fail("too_many_keys")
            for key in data:
                if (
                    not isinstance(key, str)
                    or not 1 <= len(key) <= MAX_METADATA_KEY_LENGTH
                    or "\x00" in key
                ):
                    self.fail("invalid_key")
        return super().to_internal_value(data)


class StrictSerializer(serializers.Serializer):
    """A serializer that refuses members it does not declare.

    Read-only members of the order get "This field is read-only.", anything else
    "Unknown field.", each under its own name in ``errors``.
    """

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            errors = {}
            for name in data:
                if name in self.fields:
                    continue
                message = (
                    "This field is read-only." if name in READ_ONLY_FIELDS else "Unknown field."
                )
                errors[str(name)] = [message]
            if errors:
                raise serializers.ValidationError(errors)
        return super().to_internal_value(data)


class OrderCreateSerializer(StrictSerializer):
    """Body of ``POST /orders``: every member optional."""

    totalCents = StrictIntegerField(  # the wire name
        source="total_cents", min_value=0, max_value=MAX_TOTAL_CENTS, required=False
    )
    currency = StrictCharField(required=False, trim_whitespace=False)
    metadata = MetadataField(required=False)

    def validate_currency(self, value: str) -> str:
        if not CURRENCY_PATTERN.match(value):
            raise serializers.ValidationError(
                "Must be an ISO 4217 code: three uppercase letters (e.g. USD)."
            )
        return value


class OrderConfirmSerializer(StrictSerializer):
    """Body of ``PATCH /orders/{id}/confirm``: ``totalCents`` is required."""

    totalCents = StrictIntegerField(  # the wire name
        source="total_cents", min_value=0, max_value=MAX_TOTAL_CENTS
    )


class OrderCloseSerializer(StrictSerializer):
    """Body of ``POST /orders/{id}/close``: empty (``{}`` or no body)."""


STATUS_VALUES = ("draft", "confirmed", "closed")


class OrderListFilterSerializer(serializers.Serializer):
    """The query parameters of ``GET /orders`` that select orders.

    Each declared field is a query parameter (its name) that filters on its ``source``:
    ``orders.filter(<source>=<validated value>)``, and whose value is part of a cursor's
    scope. A host adds its own in a subclass (``LIST_FILTER_SERIALIZER``,
    docs/guide/extending.md). Parameters it does not declare are ignored; an invalid value
    is 400 ``invalid_filter``, its first error message as the detail.
    """

    status = serializers.ChoiceField(
        choices=STATUS_VALUES,
        required=False,
        error_messages={"invalid_choice": f"status must be one of: {', '.join(STATUS_VALUES)}."},
    )


def plainly_valid_create(data: Any) -> dict[str, Any] | None:
    """The validated data of a ``POST /orders`` body that is plainly valid, else ``None``.

    Why (docs/benchmarks.md, Finding 3): a DRF serializer deep-copies its declared fields
    every time it is built, a noticeable share of a create's Python time. A body that
    passes these checks is one :class:`OrderCreateSerializer` accepts, with the same
    validated data. Anything else, even a body the serializer would accept, gives ``None``
    and goes through the serializer, so every error is DRF's own, message and shape.
    """
    if type(data) is not dict:
        return None
    validated: dict[str, Any] = {}
    for name, value in data.items():
        if name == "totalCents":
            if type(value) is not int or not 0 <= value <= MAX_TOTAL_CENTS:
                return None
            validated["total_cents"] = value
        elif name == "currency":
            if type(value) is not str or not CURRENCY_PATTERN.match(value):
                return None
            validated["currency"] = value
        elif name == "metadata":
            metadata = _plain_metadata(value)
            if metadata is None:
                return None
            validated["metadata"] = metadata
        else:
            return None
    return validated


def plainly_valid_transition(serializer_class: type, data: Any) -> dict[str, Any] | None:
    """The validated data of a confirm or close body that is plainly valid for the
    package's own :class:`OrderConfirmSerializer` / :class:`OrderCloseSerializer`, else
    ``None`` (then the serializer validates it, and its errors are DRF's own).

    The transitions' counterpart of :func:`plainly_valid_create` (docs/benchmarks.md,
    Finding 10): ``{"totalCents": <integer in range>}`` for confirm, ``{}`` (or no body)
    for close. A host's serializer class always sees the body.
    """
    if type(data) is not dict:
        return None
    if serializer_class is OrderCloseSerializer:
        return {} if not data else None
    if serializer_class is OrderConfirmSerializer and len(data) == 1:
        value = data.get("totalCents")
        if type(value) is int and 0 <= value <= MAX_TOTAL_CENTS:
            return {"total_cents": value}
    return None


def plainly_valid_filters(params: Mapping[str, str]) -> dict[str, Any] | None:
    """The validated filters of ``GET /orders`` parameters that are plainly valid for
    :class:`OrderListFilterSerializer`, else ``None``.

    The list's counterpart of :func:`plainly_valid_create`: building the serializer costs
    about 0.09 ms, some 5 % of a list request. Anything but an absent or valid ``status``
    gives ``None`` and goes through the serializer, so errors stay its own.
    """
    status = params.get("status")
    if status is None:
        return {}
    return {"status": status} if status in STATUS_VALUES else None


def _plain_metadata(value: Any) -> dict[str, str] | None:
    if type(value) is not dict or len(value) > MAX_METADATA_KEYS:
        return None
    for key, item in value.items():
        if (
            type(key) is not str
            or not 1 <= len(key) <= MAX_METADATA_KEY_LENGTH
            or type(item) is not str
            or len(item) > MAX_METADATA_VALUE_LENGTH
            or not _plain_text(key)
            or not _plain_text(item)
        ):
            return None
    return dict(value)


def _plain_text(value: str) -> bool:
    """No NUL and no lone surrogate (both refused by the serializer's fields)."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
