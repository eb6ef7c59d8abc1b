"""Customers, and the project's order model: the package's order plus two host fields."""

from __future__ import annotations

from typing import Any

from django.db import models

from django_orders.models import AbstractOrder


class Customer(models.Model):
    """A customer of one tenant, with the credit limit its orders may not exceed."""

    tenant_id = models.CharField(max_length=64)
    name = models.CharField(max_length=200)
    credit_limit_cents = models.BigIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=("tenant_id", "name"), name="shop_customer_name"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.tenant_id})"


class Order(AbstractOrder):
    """An order (settings.DJANGO_ORDERS_ORDER_MODEL = "shop.Order") with the customer it is
    for and the channel it came through."""

    class Channel(models.TextChoices):
        WEB = "web", "Web"
        PHONE = "phone", "Phone"
        STORE = "store", "Store"

    customer = models.ForeignKey(
        Customer, on_delete=models.PROTECT, null=True, blank=True, related_name="orders"
    )
    channel = models.CharField(max_length=16, choices=Channel.choices, default=Channel.WEB)

    class Meta(AbstractOrder.Meta):
        indexes = [
            *AbstractOrder.Meta.indexes,
            # GET /orders?channel=phone walks this index (as status walks the package's).
            models.Index(
                fields=("tenant_id", "channel", "created_at", "id"),
                name="shop_order_channel_keyset",
            ),
        ]

    def to_dict(self) -> dict[str, Any]:
        # customer_id, not customer: no query, and the same value before and after a save.
        return {**super().to_dict(), "customerId": self.customer_id, "channel": self.channel}
