"""Views of a pretend host project: some tenant-scoped, some not."""

from django.http import HttpRequest, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View
from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from django_orders.idempotency import IdempotencyMixin
from django_orders.parsers import OrdersJSONParser
from django_orders.tenancy import TenantScopedMixin, get_current_tenant, tenant_scoped


def health(request: HttpRequest) -> JsonResponse:
    """A host endpoint that knows nothing of tenants."""
    return JsonResponse({"ok": True, "tenant": get_current_tenant()})


@tenant_scoped
def scoped_function(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"tenant": get_current_tenant(), "attr": request.tenant_id})


class ScopedAPIView(TenantScopedMixin, APIView):
    def get(self, request):  # type: ignore[no-untyped-def]
        if "boom" in request.query_params:
            raise RuntimeError("a host view that fails")
        return Response({"tenant": self.tenant_id, "current": get_current_tenant()})


class PlainAPIView(APIView):
    def get(self, request):  # type: ignore[no-untyped-def]
        return Response({"tenant": get_current_tenant()})


class PinNoteView(IdempotencyMixin, TenantScopedMixin, APIView):
    """A host view with a free-text URL parameter and the idempotency mixin."""

    parser_classes = [OrdersJSONParser]

    def post(self, request, ref):  # type: ignore[no-untyped-def]
        return Response({"pinned": ref}, status=201)


@method_decorator(tenant_scoped, name="dispatch")
class ScopedDjangoView(View):
    """A Django (non-DRF) class-based view, scoped as docs/guide/tenancy.md says."""

    def get(self, request: HttpRequest) -> JsonResponse:
        return JsonResponse({"tenant": get_current_tenant(), "attr": request.tenant_id})  # type: ignore[attr-defined]


class BrowsableScopedAPIView(TenantScopedMixin, APIView):
    """DRF's browsable API runs check_permissions() again while rendering, after dispatch."""

    renderer_classes = [BrowsableAPIRenderer, JSONRenderer]

    def get(self, request):  # type: ignore[no-untyped-def]
        return Response({"tenant": self.tenant_id})

    def post(self, request):  # type: ignore[no-untyped-def]
        return Response({"tenant": self.tenant_id})


class OrdersSeenView(TenantScopedMixin, APIView):
    """A host view that forgets to filter by tenant: ``Order.objects.all()``, raw
    (docs/guide/row-level-security.md)."""

    def get(self, request):  # type: ignore[no-untyped-def]
        from django_orders.models import Order

        return Response(sorted(Order.objects.values_list("tenant_id", flat=True)))


@tenant_scoped
def orders_seen_function(request: HttpRequest) -> JsonResponse:
    """The same, as a function view."""
    from django_orders.models import Order

    return JsonResponse(sorted(Order.objects.values_list("tenant_id", flat=True)), safe=False)
