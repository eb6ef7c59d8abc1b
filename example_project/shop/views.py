"""A host endpoint beside the orders API: raise or lower a customer's credit limit.

It uses the package's building blocks on a view of its own — the tenant from the request
(``TenantScopedMixin``), an ``Idempotency-Key`` (``IdempotencyMixin``), strict JSON and
problem details — and records a host event, ``com.example.customer.credit_limit_changed``,
in the same transaction as the change (``django_orders.outbox.record_event``): the relay
publishes it beside the order events.
"""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from django_orders.idempotency import IdempotencyMixin
from django_orders.outbox import record_event
from django_orders.parsers import OrdersJSONParser
from django_orders.problems import Problem, exception_handler
from django_orders.renderers import OrdersJSONRenderer
from django_orders.serializers import StrictIntegerField, StrictSerializer
from django_orders.tenancy import TenantScopedMixin
from shop.models import Customer


class CreditLimitBody(StrictSerializer):
    creditLimitCents = StrictIntegerField(min_value=0, max_value=2**63 - 1)


class CreditLimitView(IdempotencyMixin, TenantScopedMixin, APIView):
    """``PUT /customers/{id}/credit-limit`` ``{"creditLimitCents": 500000}``."""

    parser_classes = [OrdersJSONParser]
    renderer_classes = [OrdersJSONRenderer]

    def get_exception_handler(self) -> Any:
        return exception_handler  # problem+json, as the orders API answers

    def put(self, request: Request, customer_id: int) -> Response:
        body = CreditLimitBody(data=request.data)
        body.is_valid(raise_exception=True)
        limit = body.validated_data["creditLimitCents"]
        # IdempotencyMixin runs the request in one transaction: the change, its event and
        # the stored response of the Idempotency-Key commit together, or not at all.
        customer = (
            Customer.objects.select_for_update()
            .filter(tenant_id=self.tenant_id, pk=customer_id)
            .first()
        )
        if customer is None:
            raise Problem(404, "not_found", "No such customer.")
        previous, customer.credit_limit_cents = customer.credit_limit_cents, limit
        customer.save(update_fields=["credit_limit_cents"])
        record_event(
            "com.example.customer.credit_limit_changed",
            aggregate_type="customer",
            aggregate_id=customer.pk,
            data={
                "customerId": customer.pk,
                "creditLimitCents": limit,
                "previousCreditLimitCents": previous,
            },
        )
        return Response({"customerId": customer.pk, "creditLimitCents": limit})


# The endpoint's OpenAPI description (docs/guide/openapi.md, "A view of your own"): the
# headers the mixins read, its body, and the problems it answers in the package's Problem
# schema. Applied here rather than as a decorator, so the view above reads as the guide
# quotes it.
def _describe() -> None:
    from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
    from rest_framework import serializers

    class CreditLimit(serializers.Serializer):
        customerId = serializers.IntegerField()
        creditLimitCents = serializers.IntegerField(min_value=0, max_value=2**63 - 1)

    problem = {"$ref": "#/components/schemas/Problem"}
    header = OpenApiParameter.HEADER
    extend_schema_view(
        put=extend_schema(
            operation_id="customers_credit_limit_update",
            summary="Set a customer's credit limit (idempotent)",
            tags=["customers"],
            auth=[],  # the demo authenticates nobody: no lock icon
            parameters=[
                OpenApiParameter(
                    "X-Tenant-Id", str, header, required=True, pattern="^[A-Za-z0-9._-]{1,64}$"
                ),
                OpenApiParameter(
                    "Idempotency-Key", str, header, required=True, pattern="^[!#-~][ -~]{0,254}$"
                ),
            ],
            request=CreditLimitBody,
            responses={
                200: CreditLimit,
                **{
                    (status, "application/problem+json"): problem
                    for status in (400, 404, 405, 409, 411, 413, 415, 422)
                },
            },
        )
    )(CreditLimitView)


_describe()
