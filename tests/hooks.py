"""Resolver and access-check hooks used by the tests, as a host would write them."""

from typing import Any


def allow_shop_1(request: Any, tenant_id: str) -> bool:
    return tenant_id == "shop-1"


def staff_only(request: Any, tenant_id: str) -> bool:
    """Allows authenticated staff users only: proves the check sees DRF's user."""
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_authenticated and user.is_staff)


def query_param_resolver(request: Any) -> str | None:
    return request.GET.get("tenant")


def always_none_resolver(request: Any) -> str | None:
    return None
