"""OpenAPI 3 description of the endpoints, for drf-spectacular (the ``openapi`` extra).

Imported by ``AppConfig.ready()`` only when drf-spectacular is installed. It describes the
views through drf-spectacular's view extensions, so the views themselves stay free of
schema decorators and the package works without the extra. Request bodies and the list's
filter parameters are the serializer classes the views use (the host's, when it configured
its own), and the host fields they declare are members of the order document.
"""

from __future__ import annotations

import functools
from typing import Any

from drf_spectacular.extensions import OpenApiViewExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers

from django_orders.serializers import (
    STATUS_VALUES,
    OrderConfirmSerializer,
    OrderCreateSerializer,
)


class OrderDocument(serializers.Serializer):
    """An order as the API shows it (docs/api/README.md)."""

    id = serializers.UUIDField()
    tenantId = serializers.CharField()
    status = serializers.ChoiceField(choices=STATUS_VALUES)
    version = serializers.IntegerField(min_value=1)
    totalCents = serializers.IntegerField(allow_null=True, min_value=0)
    currency = serializers.CharField(min_length=3, max_length=3)
    metadata = serializers.DictField(child=serializers.CharField())
    createdAt = serializers.DateTimeField()
    updatedAt = serializers.DateTimeField()
    confirmedAt = serializers.DateTimeField(allow_null=True)
    closedAt = serializers.DateTimeField(allow_null=True)


class OrderPage(serializers.Serializer):
    items = OrderDocument(many=True)
    nextCursor = serializers.CharField(allow_null=True)


# The members the package's own request serializers declare; any other member of the
# serializers in force is a host field, shown in the order document too.
_PACKAGE_INPUT_MEMBERS = frozenset(
    {*OrderCreateSerializer._declared_fields, *OrderConfirmSerializer._declared_fields}
)


@functools.cache
def order_schemas(*input_serializers: type[serializers.Serializer]) -> tuple[type, type]:
    """The order document and the list page, with the host fields of ``input_serializers``.

    A host field accepted on create or confirm is a member of the order (its ``to_dict``
    returns it, docs/guide/extending.md), so the document describes it with the field the
    host declared, as a member that is always present. Cached: one component per name.
    """
    host: dict[str, serializers.Field] = {}
    for serializer_class in input_serializers:
        for name, field in serializer_class._declared_fields.items():
            if name not in _PACKAGE_INPUT_MEMBERS and name not in OrderDocument._declared_fields:
                # DRF keeps a field's arguments to copy it (Field.__deepcopy__).
                args, kwargs = field._args, field._kwargs  # type: ignore[attr-defined]
                kwargs = {k: v for k, v in kwargs.items() if k != "default"}
                host[name] = type(field)(*args, **{**kwargs, "required": True})
    if not host:
        return OrderDocument, OrderPage
    document = type("OrderDocument", (OrderDocument,), {"__module__": __name__, **host})
    page = type("OrderPage", (OrderPage,), {"__module__": __name__, "items": document(many=True)})
    return document, page


def _schemas() -> tuple[type, type]:
    from django_orders.views import OrderCollectionView, OrderConfirmView

    return order_schemas(
        OrderCollectionView().get_create_serializer_class(),
        OrderConfirmView().get_serializer_class(),
    )


class ProblemDocument(serializers.Serializer):
    """RFC 9457 problem details with the stable ``code`` member."""

    type = serializers.CharField()
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    code = serializers.CharField()


TENANT = OpenApiParameter(
    "X-Tenant-Id",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=True,
    description="The tenant the request acts for (header name configurable).",
)
IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description="1–255 printable ASCII characters; a retry with the same key and request "
    "replays the first response.",
)
IF_MATCH = OpenApiParameter(
    "If-Match",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=True,
    description='The ETag of the version you read, e.g. "3" (or *).',
)
IF_NONE_MATCH = OpenApiParameter(
    "If-None-Match",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description="ETag(s) you hold; a match answers 304 Not Modified.",
)
ORDER_ID = OpenApiParameter("order_id", OpenApiTypes.UUID, OpenApiParameter.PATH)


def _problems(*statuses: int) -> dict[int, OpenApiResponse]:
    return {
        status: OpenApiResponse(ProblemDocument, description="Problem details")
        for status in statuses
    }


def _fix(target: Any, method: str, **schema: Any) -> Any:
    """A subclass of ``target`` whose ``method`` carries ``extend_schema(**schema)``."""
    handler = getattr(target, method)
    fixed = type(target.__name__, (target,), {method: extend_schema(**schema)(handler)})
    fixed.__module__ = target.__module__
    return fixed


class OrderCollectionSchema(OpenApiViewExtension):
    target_class = "django_orders.views.OrderCollectionView"
    match_subclasses = True  # a host's subclasses, mounted with orders_urls()

    def view_replacement(self) -> Any:
        document, page = _schemas()
        instance = self.target()
        view = _fix(
            self.target,
            "get",
            operation_id="orders_list",
            tags=["orders"],
            summary="List the tenant's orders, newest first (keyset-paginated)",
            parameters=[
                TENANT,
                OpenApiParameter("limit", OpenApiTypes.INT, description="1–100, default 20"),
                OpenApiParameter(
                    "cursor", OpenApiTypes.STR, description="nextCursor of the previous page"
                ),
                # Each of its fields a query parameter (drf-spectacular explodes it).
                instance.get_filter_serializer_class(),
            ],
            responses={200: page, **_problems(400, 403)},
        )
        return _fix(
            view,
            "post",
            operation_id="orders_create",
            tags=["orders"],
            summary="Create a draft order (idempotent)",
            parameters=[TENANT, IDEMPOTENCY_KEY],
            request=instance.get_create_serializer_class(),
            responses={201: document, **_problems(400, 403, 409, 413, 415, 422)},
        )


class OrderDetailSchema(OpenApiViewExtension):
    target_class = "django_orders.views.OrderDetailView"
    match_subclasses = True  # a host's subclasses, mounted with orders_urls()

    def view_replacement(self) -> Any:
        document, _page = _schemas()
        return _fix(
            self.target,
            "get",
            operation_id="orders_retrieve",
            tags=["orders"],
            summary="One order, with its ETag",
            parameters=[TENANT, ORDER_ID, IF_NONE_MATCH],
            responses={
                200: document,
                304: OpenApiResponse(description="Not Modified"),
                **_problems(400, 403, 404),
            },
        )


class OrderConfirmSchema(OpenApiViewExtension):
    target_class = "django_orders.views.OrderConfirmView"
    match_subclasses = True  # a host's subclasses, mounted with orders_urls()

    def view_replacement(self) -> Any:
        document, _page = _schemas()
        return _fix(
            self.target,
            "patch",
            operation_id="orders_confirm",
            tags=["orders"],
            summary="Confirm a draft order (If-Match required)",
            parameters=[TENANT, ORDER_ID, IF_MATCH, IDEMPOTENCY_KEY],
            request=self.target().get_serializer_class(),
            responses={200: document, **_problems(400, 403, 404, 409, 412, 422, 428)},
        )


class OrderCloseSchema(OpenApiViewExtension):
    target_class = "django_orders.views.OrderCloseView"
    match_subclasses = True  # a host's subclasses, mounted with orders_urls()

    def view_replacement(self) -> Any:
        document, _page = _schemas()
        return _fix(
            self.target,
            "post",
            operation_id="orders_close",
            tags=["orders"],
            summary="Close a confirmed order (If-Match required)",
            parameters=[TENANT, ORDER_ID, IF_MATCH, IDEMPOTENCY_KEY],
            request=None,
            responses={200: document, **_problems(400, 403, 404, 409, 412, 422, 428)},
        )
