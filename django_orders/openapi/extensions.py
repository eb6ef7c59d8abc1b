"""drf-spectacular extensions: they attach the description to the package's views, and
describe the strict serializers and the metadata field as they validate.

Registered by importing this module (``django_orders.openapi`` does, from
``AppConfig.ready()``); the views themselves carry no schema code, so the package works
without drf-spectacular.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import (
    OpenApiSerializerExtension,
    OpenApiSerializerFieldExtension,
    OpenApiViewExtension,
)

from django_orders.openapi import documents
from django_orders.openapi.operations import OrdersAutoSchema
from django_orders.serializers import OrderCreateSerializer


class StrictSerializerSchema(OpenApiSerializerExtension):
    """A :class:`~django_orders.serializers.StrictSerializer` refuses members it does not
    declare (``additionalProperties: false``); the package's ``currency`` check is a
    pattern, unless a subclass replaced ``validate_currency``."""

    target_class = "django_orders.serializers.StrictSerializer"
    match_subclasses = True

    def map_serializer(self, auto_schema: Any, direction: str) -> dict[str, Any]:
        schema: dict[str, Any] = auto_schema._map_serializer(
            self.target, direction, bypass_extensions=True
        )
        if direction == "request":
            schema["additionalProperties"] = False
        serializer_class = type(self.target) if not isinstance(self.target, type) else self.target
        currency = schema.get("properties", {}).get("currency")
        if (
            currency is not None
            and issubclass(serializer_class, OrderCreateSerializer)
            and serializer_class.validate_currency is OrderCreateSerializer.validate_currency
        ):
            currency.update(documents.currency_schema())
        return schema


class MetadataFieldSchema(OpenApiSerializerFieldExtension):
    target_class = "django_orders.serializers.MetadataField"
    match_subclasses = True

    def map_serializer_field(self, auto_schema: Any, direction: str) -> dict[str, Any]:
        return documents.metadata_schema()


class _OrdersViewSchema(OpenApiViewExtension):
    """The view, or a host's subclass mounted with ``orders_urls()``, with its description."""

    match_subclasses = True

    def view_replacement(self) -> Any:
        replacement = type(self.target.__name__, (self.target,), {"schema": OrdersAutoSchema()})
        replacement.__module__ = self.target.__module__
        return replacement


class OrderCollectionSchema(_OrdersViewSchema):
    target_class = "django_orders.views.OrderCollectionView"


class OrderDetailSchema(_OrdersViewSchema):
    target_class = "django_orders.views.OrderDetailView"


class OrderConfirmSchema(_OrdersViewSchema):
    target_class = "django_orders.views.OrderConfirmView"


class OrderCloseSchema(_OrdersViewSchema):
    target_class = "django_orders.views.OrderCloseView"
