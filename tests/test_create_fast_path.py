"""``plainly_valid_create``: the serializer-free path of ``POST /orders`` validation.

Whatever it accepts, :class:`OrderCreateSerializer` accepts with the very same validated
data; whatever else it meets it leaves to the serializer (``None``), so errors stay DRF's.
"""

from __future__ import annotations

from typing import Any

import pytest

from django_orders.serializers import OrderCreateSerializer, plainly_valid_create

BODIES: list[Any] = [
    {},
    {"totalCents": 0},
    {"totalCents": 2**63 - 1},
    {"totalCents": 2**63},
    {"totalCents": -1},
    {"totalCents": True},
    {"totalCents": 1.0},
    {"totalCents": "12"},
    {"totalCents": None},
    {"currency": "EUR"},
    {"currency": "eur"},
    {"currency": "EURO"},
    {"currency": ""},
    {"currency": "EU\x00"},
    {"currency": 123},
    {"metadata": {}},
    {"metadata": {"a": "", "b": "x" * 500}},
    {"metadata": {"a": "x" * 501}},
    {"metadata": {"k" * 40: "v"}},
    {"metadata": {"k" * 41: "v"}},
    {"metadata": {"": "v"}},
    {"metadata": {"a\x00": "v"}},
    {"metadata": {"a": "v\x00"}},
    {"metadata": {"a": "\ud800"}},
    {"metadata": {"\ud800": "v"}},
    {"metadata": {"a": 1}},
    {"metadata": {"a": None}},
    {"metadata": {str(i): "v" for i in range(50)}},
    {"metadata": {str(i): "v" for i in range(51)}},
    {"metadata": []},
    {"metadata": None},
    {"totalCents": 5, "currency": "USD", "metadata": {"source": "bench"}},
    {"id": "x"},
    {"colour": "red"},
    [],
    None,
    "text",
]


@pytest.mark.parametrize("body", BODIES)
def test_what_it_accepts_the_serializer_accepts_identically(body: Any) -> None:
    fast = plainly_valid_create(body)
    serializer = OrderCreateSerializer(data=body)
    if fast is None:
        return  # the serializer decides, errors and all
    assert serializer.is_valid(), serializer.errors
    assert fast == dict(serializer.validated_data)


def test_a_plain_valid_body_takes_the_fast_path() -> None:
    body = {"totalCents": 5, "currency": "USD", "metadata": {"a": "b", "c": ""}}
    assert plainly_valid_create(body) == {
        "total_cents": 5,
        "currency": "USD",
        "metadata": {"a": "b", "c": ""},
    }
    assert plainly_valid_create({}) == {}
