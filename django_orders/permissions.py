"""DRF permissions of the package."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission

from django_orders.tenancy import check_tenant_access


class TenantAccessPermission(BasePermission):
    """May the authenticated caller act for the request's tenant?

    Asks the ``TENANT_ACCESS_CHECK`` hook, ``callable(request, tenant_id) -> bool``. It runs
    as a DRF permission, after DRF authentication, so token and JWT users are seen (a
    middleware-only check would see an anonymous user). A refusal is 403
    ``tenant_forbidden``.
    """

    message = "You may not act for this tenant."
    code = "tenant_forbidden"

    def has_permission(self, request: Any, view: Any) -> bool:
        return check_tenant_access(request, getattr(request, "tenant_id", None))
