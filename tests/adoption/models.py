from typing import Any

from django.db import models

from django_orders.models import AbstractOrder, order_constraints, order_indexes


class Order(AbstractOrder):
    channel = models.CharField(max_length=16, default="web")

    class Meta(AbstractOrder.Meta):
        # The package's table, with the names its migrations gave its indexes and checks.
        db_table = "django_orders_order"
        indexes = [
            *order_indexes("orders_order"),
            models.Index(
                fields=("tenant_id", "channel", "created_at", "id"),
                name="adoption_order_channel",
            ),
        ]
        constraints = order_constraints("orders_order")

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "channel": self.channel}
