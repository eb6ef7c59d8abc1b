"""Hooks used by the tests, as a host would write them: tenant resolvers and access
checks, serializers and rules (docs/guide/extending.md)."""

from typing import Any

from rest_framework import serializers
from rest_framework.throttling import UserRateThrottle

from django_orders.serializers import (
    OrderConfirmSerializer,
    OrderCreateSerializer,
    OrderListFilterSerializer,
)
from django_orders.tenancy import tenant_source


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


def raising_resolver(request: Any) -> str | None:
    """Raises what ``?raise=`` names: what a host's resolver may raise (docs/guide/tenancy.md)."""
    from django.core import exceptions as django_exceptions
    from rest_framework import exceptions

    from django_orders.problems import Problem

    raised = {
        "not_authenticated": exceptions.NotAuthenticated(),
        "permission_denied": exceptions.PermissionDenied(),
        "throttled": exceptions.Throttled(wait=7),
        "django_permission_denied": django_exceptions.PermissionDenied(),
        "problem": Problem(403, "no_shop", "Your account belongs to no shop."),
    }
    name = request.GET.get("raise")
    if name is None:
        return "shop-1"
    raise raised[name]


@tenant_source("the shop of your account")
def declared_resolver(request: Any) -> str | None:
    return request.GET.get("shop")


class DeclaredResolverObject:
    """A resolver as a callable object, declaring its source as an attribute."""

    tenant_source = "the subdomain"

    def __call__(self, request: Any) -> str | None:
        return request.GET.get("shop")


declared_resolver_object = DeclaredResolverObject()


class OneRequestThrottle(UserRateThrottle):
    """One request a minute per user, whatever DEFAULT_THROTTLE_RATES says."""

    rate = "1/min"


# -- host serializers and rules (docs/guide/extending.md), as a host would write them ----


class ReferencedCreateSerializer(OrderCreateSerializer):
    """A host rule on package members: every order needs a ``ref`` in its metadata."""

    def validate_metadata(self, value: dict[str, str]) -> dict[str, str]:
        if "ref" not in value:
            raise serializers.ValidationError("A ref is required.")
        return value

    def validate(self, attrs: dict[str, object]) -> dict[str, object]:
        if "metadata" not in attrs:
            raise serializers.ValidationError({"metadata": ["A ref is required."]})
        return attrs


class MinimumConfirmSerializer(OrderConfirmSerializer):
    """Confirms of less than 1.00 are refused."""

    def validate_totalCents(self, value: int) -> int:
        if value < 100:
            raise serializers.ValidationError("At least 100.")
        return value


class CurrencyFilterSerializer(OrderListFilterSerializer):
    """``GET /orders?currency=EUR``."""

    currency = serializers.RegexField(r"^[A-Z]{3}$", required=False)


class StatusSettingConfirmSerializer(OrderConfirmSerializer):
    """Wrong: ``status`` is the domain layer's (system check E013)."""

    state = serializers.CharField(source="status")


def refuse_everything(change: object) -> None:
    from django_orders.services import RuleViolation

    raise RuleViolation("refused", "Everything is refused.")


NOT_CALLABLE = 42
