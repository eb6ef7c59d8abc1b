"""The tenant access check: may the caller act for the request's tenant?

This module sits below :mod:`django_orders.tenancy` (which runs the check after resolving
the tenant) and imports nothing of it, so the two never import each other.
"""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission

from django_orders.conf import orders_settings
from django_orders.problems import Problem


def tenant_forbidden() -> Problem:
    """403 ``tenant_forbidden``: the access hook refused the caller for this tenant."""
    return Problem(403, "tenant_forbidden", "You may not act for this tenant.")


def check_tenant_access(request: Any) -> None:
    """Ask the ``TENANT_ACCESS_CHECK`` hook about ``request.tenant_id``; raise 403 on refusal.

    No hook configured, or no tenant (a tenant-exempt path), means allowed.
    """
    check = orders_settings.TENANT_ACCESS_CHECK
    tenant_id = getattr(request, "tenant_id", None)
    if check is None or tenant_id is None:
        return
    if not check(request, tenant_id):
        raise tenant_forbidden()


class TenantAccessPermission(BasePermission):
    """May the authenticated caller act for the request's tenant?

    Asks the ``TENANT_ACCESS_CHECK`` hook, ``callable(request, tenant_id) -> bool``.
    :class:`~django_orders.tenancy.TenantScopedMixin` runs it after DRF authentication, the
    view's own permissions and the tenant's resolution, so token and JWT users are seen. A
    refusal is 403 ``tenant_forbidden``.
    """

    def has_permission(self, request: Any, view: Any) -> bool:
        # Raised rather than returning False: DRF would turn a refusal of an
        # unauthenticated caller into 401, and the contract says a tenant refusal is 403.
        check_tenant_access(request)
        return True
