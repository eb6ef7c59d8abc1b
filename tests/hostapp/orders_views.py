"""A host's subclasses of the package's views, each with a DRF policy of its own."""

from typing import Any

from rest_framework.authentication import BasicAuthentication
from rest_framework.permissions import IsAuthenticated
from rest_framework.throttling import ScopedRateThrottle

from django_orders import views


class LockedCollection(views.OrderCollectionView):
    permission_classes = [IsAuthenticated]


class ReopenedCollection(LockedCollection):
    """Back to the host's default permissions, below a subclass that had set its own."""

    permission_classes = views.HOST_DEFAULT


class BasicAuthCollection(views.OrderCollectionView):
    authentication_classes = [BasicAuthentication]
    permission_classes = [IsAuthenticated]


class ThrottledCollection(views.OrderCollectionView):
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "orders-burst"


class UnguardedDetail(views.OrderDetailView):
    """Drops every permission DRF-style; the tenant access check must still apply."""

    def get_permissions(self) -> list[Any]:
        return []
