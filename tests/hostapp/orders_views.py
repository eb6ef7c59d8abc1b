"""A host's subclasses of the package's views, each with a DRF policy of its own."""

from typing import Any

from rest_framework.authentication import BasicAuthentication
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
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


class EnvelopedCollection(views.OrderCollectionView):
    """Answers a create with a response of its own, made after the handler returned."""

    def finalize_response(self, request: Any, response: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(response, Response) and response.status_code == 201:  # not a replay
            response = Response(
                {"order": response.data},
                status=201,
                headers={"Location": response["Location"], "ETag": response["ETag"]},
            )
        return super().finalize_response(request, response, *args, **kwargs)


class RelocatedCollection(views.OrderCollectionView):
    """Changes a stored header of the handler's response after the handler returned."""

    def finalize_response(self, request: Any, response: Any, *args: Any, **kwargs: Any) -> Any:
        if response.status_code == 201 and not response.has_header("Idempotent-Replayed"):
            response["Location"] = response["Location"] + "?relocated=1"
        return super().finalize_response(request, response, *args, **kwargs)
