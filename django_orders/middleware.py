"""``TenantMiddleware``: no longer needed, kept so existing ``MIDDLEWARE`` settings load.

Tenant-scoped views resolve the tenant themselves — DRF views after DRF authentication,
which a middleware runs too early for — and restore the current tenant when they are done.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.exceptions import MiddlewareNotUsed


class TenantMiddleware:
    """Deprecated: does nothing; remove it from ``MIDDLEWARE`` (check ``django_orders.W003``).

    It raises :class:`~django.core.exceptions.MiddlewareNotUsed`, so Django leaves it out
    of the middleware chain: listing it costs nothing per request.
    """

    def __init__(self, get_response: Callable[..., Any]) -> None:
        raise MiddlewareNotUsed(
            "django_orders.middleware.TenantMiddleware is no longer needed: remove it."
        )
