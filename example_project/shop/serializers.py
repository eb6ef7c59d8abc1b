"""The API side of the host fields: accepted on create (and the customer on confirm),
and ``channel`` as a list filter. Wired in by the ``DJANGO_ORDERS`` settings."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from rest_framework import serializers

from django_orders.serializers import (
    OrderConfirmSerializer,
    OrderCreateSerializer,
    OrderListFilterSerializer,
)
from shop.models import Customer, Order


class CustomerField(serializers.PrimaryKeyRelatedField):
    """A customer of the request's tenant, by its id (a JSON integer).

    Another tenant's customer does not exist, as far as this tenant can tell.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(queryset=Customer.objects.all(), **kwargs)

    def get_queryset(self) -> QuerySet[Customer]:
        return super().get_queryset().filter(tenant_id=self.context["view"].tenant_id)

    def to_internal_value(self, data: Any) -> Customer:
        if type(data) is not int:  # strict, as the package's fields: "7" is not an id
            self.fail("incorrect_type", data_type=type(data).__name__)
        return super().to_internal_value(data)


class ShopOrderCreateSerializer(OrderCreateSerializer):
    customerId = CustomerField(source="customer", required=False, allow_null=True)
    channel = serializers.ChoiceField(choices=Order.Channel.choices, required=False)


class ShopOrderConfirmSerializer(OrderConfirmSerializer):
    # A draft may be anonymous (a cart); the customer is given at confirm at the latest.
    customerId = CustomerField(source="customer", required=False, allow_null=True)


class ShopOrderFilterSerializer(OrderListFilterSerializer):
    channel = serializers.ChoiceField(
        choices=Order.Channel.choices,
        required=False,
        error_messages={"invalid_choice": "channel must be one of: web, phone, store."},
    )
