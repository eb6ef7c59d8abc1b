"""DRF permissions of the package."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission

from django_orders.tenancy import check_tenant_access, tenant_forbidden


class TenantAccessPermission(BasePermission):
    """May the authenticated caller act for the request's tenant?

    Asks the ``TENANT_ACCESS_CHECK`` hook, ``callable(request, tenant_id) -> bool``. It runs
    as a DRF permission, after DRF authentication, so token and JWT users are seen (a
    middleware-only check would see an anonymous user). A refusal is 403
    ``tenant_forbidden``.
    """

    def has_permission(self, request: Any, view: Any) -> bool:
        if check_tenant_access(request, getattr(request, "tenant_id", None)):
            return True
        # Raised here rather than returning False: DRF would turn a refusal of an
        # unauthenticated caller into 401, and the contract says a tenant refusal is 403.
        raise tenant_forbidden()
