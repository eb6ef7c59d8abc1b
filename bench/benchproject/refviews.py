"""Reference views the package's endpoints are measured against, in the same process.

- ``NoopView``: a DRF view that touches no database, the ceiling of this server stack.
- ``PlainCreateView``: "a plain DRF create": a bare ``APIView`` that validates the body with a
  small serializer and inserts one row (an ``Order``), in autocommit. No idempotency, no
  event, no tenant checks: the floor any create with those features is compared with.
- ``OffsetListView``: DRF's stock ``LimitOffsetPagination`` (``?limit=&offset=``), as shipped
  (it runs ``COUNT(*)`` for every page, as DRF does).
- ``OffsetNoCountListView``: the same without the ``COUNT(*)``: ``OFFSET`` alone.
- ``OrKeysetListView``: a keyset walk with the OR-expanded predicate
  ``created_at < x OR (created_at = x AND id < y)``, the form most hand-written keyset
  paginators use; the cursor is an unsigned ``<iso timestamp>,<uuid>``.

All of them render orders with ``Order.to_dict()``, the package's own representation, so
serialisation costs the same everywhere.
"""

from __future__ import annotations

import datetime as dt
import uuid

from django.db.models import Q
from rest_framework import serializers
from rest_framework.generics import ListAPIView
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from django_orders.models import Order


def _tenant(request) -> str:
    return request.headers.get("X-Tenant-Id", "")


class NoopView(APIView):
    def get(self, request):
        return Response({})


class PlainCreateSerializer(serializers.Serializer):
    totalCents = serializers.IntegerField(min_value=0, required=False, allow_null=True)
    currency = serializers.RegexField(r"^[A-Z]{3}$", required=False, default="USD")
    metadata = serializers.DictField(
        child=serializers.CharField(max_length=500), required=False, default=dict
    )


class PlainCreateView(APIView):
    def post(self, request):
        serializer = PlainCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        order = Order.objects.create(
            tenant_id=_tenant(request),
            total_cents=data.get("totalCents"),
            currency=data["currency"],
            metadata=data["metadata"],
        )
        return Response(order.to_dict(), status=201)


class OrderDictSerializer(serializers.BaseSerializer):
    def to_representation(self, instance):
        return instance.to_dict()


class BenchLimitOffsetPagination(LimitOffsetPagination):
    default_limit = 20
    max_limit = 100


class OffsetListView(ListAPIView):
    serializer_class = OrderDictSerializer
    pagination_class = BenchLimitOffsetPagination

    def get_queryset(self):
        return Order.objects.filter(tenant_id=_tenant(self.request)).order_by("-created_at", "-id")


class NoCountLimitOffsetPagination(BenchLimitOffsetPagination):
    """``LimitOffsetPagination`` minus its ``COUNT(*)``: the cost of ``OFFSET`` alone.
    (The ``count`` it reports is a placeholder.)"""

    def get_count(self, queryset):
        return 10**12


class OffsetNoCountListView(OffsetListView):
    pagination_class = NoCountLimitOffsetPagination


class OrKeysetListView(APIView):
    def get(self, request):
        limit = min(int(request.query_params.get("limit", 20)), 100)
        queryset = Order.objects.filter(tenant_id=_tenant(request))
        after = request.query_params.get("after")
        if after:
            stamp, _, pk = after.partition(",")
            created_at = dt.datetime.fromisoformat(stamp)
            pk = uuid.UUID(pk)
            queryset = queryset.filter(
                Q(created_at__lt=created_at) | Q(created_at=created_at, id__lt=pk)
            )
        rows = list(queryset.order_by("-created_at", "-id")[: limit + 1])
        items, more = rows[:limit], len(rows) > limit
        next_cursor = None
        if more:
            last = items[-1]
            next_cursor = f"{last.created_at.isoformat()},{last.id}"
        return Response({"items": [o.to_dict() for o in items], "nextCursor": next_cursor})
