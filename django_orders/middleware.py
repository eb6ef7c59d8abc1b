"""``TenantMiddleware``: resolves the tenant for tenant-scoped views only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse

from django_orders.tenancy import _current_tenant, activate_tenant, is_tenant_scoped


class TenantMiddleware:
    """Resolve and validate the tenant of requests to tenant-scoped views.

    Works in ``process_view``, once the URL is resolved, so only views marked
    tenant-scoped are touched: a host's other URLs answer as before, header or not. It runs
    no database query. The current tenant is reset after every request, whatever happens,
    so it never leaks into the next request on the same thread.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = _current_tenant.set(None)
        try:
            return self.get_response(request)
        finally:
            _current_tenant.reset(token)

    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., Any],
        view_args: Any,
        view_kwargs: Any,
    ) -> HttpResponse | None:
        if not is_tenant_scoped(view_func):
            return None
        problem = activate_tenant(request)
        if problem is None:
            return None
        return problem.as_response()
