"""OpenAPI 3 description of the endpoints, for drf-spectacular (the ``openapi`` extra).

Imported by ``AppConfig.ready()`` only when drf-spectacular is installed. It describes the
views through drf-spectacular's view extensions, so the views themselves stay free of
schema decorators and the package works without the extra.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiViewExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers

from django_orders.models import Order


class OrderDocument(serializers.Serializer):
    """An order as the API shows it (docs/api/README.md)."""

    id = serializers.UUIDField()
    tenantId = serializers.CharField()
    status = serializers.ChoiceField(choices=Order.Status.values)
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


class CreateOrderBody(serializers.Serializer):
    totalCents = serializers.IntegerField(required=False, allow_null=True, min_value=0)
    currency = serializers.CharField(required=False, min_length=3, max_length=3)
    metadata = serializers.DictField(child=serializers.CharField(), required=False)


class ConfirmOrderBody(serializers.Serializer):
    totalCents = serializers.IntegerField(min_value=0)


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
                OpenApiParameter("status", OpenApiTypes.STR, enum=list(Order.Status.values)),
            ],
            responses={200: OrderPage, **_problems(400, 403)},
        )
        return _fix(
            view,
            "post",
            operation_id="orders_create",
            tags=["orders"],
            summary="Create a draft order (idempotent)",
            parameters=[TENANT, IDEMPOTENCY_KEY],
            request=CreateOrderBody,
            responses={201: OrderDocument, **_problems(400, 403, 409, 413, 415, 422)},
        )


class OrderDetailSchema(OpenApiViewExtension):
    target_class = "django_orders.views.OrderDetailView"
    match_subclasses = True  # a host's subclasses, mounted with orders_urls()

    def view_replacement(self) -> Any:
        return _fix(
            self.target,
            "get",
            operation_id="orders_retrieve",
            tags=["orders"],
            summary="One order, with its ETag",
            parameters=[TENANT, ORDER_ID, IF_NONE_MATCH],
            responses={
                200: OrderDocument,
                304: OpenApiResponse(description="Not Modified"),
                **_problems(400, 403, 404),
            },
        )


class OrderConfirmSchema(OpenApiViewExtension):
    target_class = "django_orders.views.OrderConfirmView"
    match_subclasses = True  # a host's subclasses, mounted with orders_urls()

    def view_replacement(self) -> Any:
        return _fix(
            self.target,
            "patch",
            operation_id="orders_confirm",
            tags=["orders"],
            summary="Confirm a draft order (If-Match required)",
            parameters=[TENANT, ORDER_ID, IF_MATCH, IDEMPOTENCY_KEY],
            request=ConfirmOrderBody,
            responses={200: OrderDocument, **_problems(400, 403, 404, 409, 412, 422, 428)},
        )


class OrderCloseSchema(OpenApiViewExtension):
    target_class = "django_orders.views.OrderCloseView"
    match_subclasses = True  # a host's subclasses, mounted with orders_urls()

    def view_replacement(self) -> Any:
        return _fix(
            self.target,
            "post",
            operation_id="orders_close",
            tags=["orders"],
            summary="Close a confirmed order (If-Match required)",
            parameters=[TENANT, ORDER_ID, IF_MATCH, IDEMPOTENCY_KEY],
            request=None,
            responses={200: OrderDocument, **_problems(400, 403, 404, 409, 412, 422, 428)},
        )
