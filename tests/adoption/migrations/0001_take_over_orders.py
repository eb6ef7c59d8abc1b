"""Take over ``django_orders_order`` as it is: state only, nothing changes in the database.

Written by ``makemigrations`` for the model without its host field, then wrapped in
``SeparateDatabaseAndState`` by hand (docs/guide/extending.md).
"""

import django.utils.timezone
from django.db import migrations, models

import django_orders.ids


class Migration(migrations.Migration):
    initial = True

    # The table is there once the package's migrations ran.
    dependencies = [("django_orders", "0005_order_swappable")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="Order",
                    fields=[
                        (
                            "id",
                            models.UUIDField(
                                default=django_orders.ids.uuid7,
                                editable=False,
                                primary_key=True,
                                serialize=False,
                            ),
                        ),
                        ("tenant_id", models.CharField(max_length=64)),
                        (
                            "status",
                            models.CharField(
                                choices=[
                                    ("draft", "Draft"),
                                    ("confirmed", "Confirmed"),
                                    ("closed", "Closed"),
                                ],
                                default="draft",
                                max_length=16,
                            ),
                        ),
                        ("version", models.PositiveIntegerField(default=1)),
                        ("total_cents", models.BigIntegerField(blank=True, null=True)),
                        ("currency", models.CharField(max_length=3)),
                        ("metadata", models.JSONField(blank=True, default=dict)),
                        ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                        ("updated_at", models.DateTimeField(default=django.utils.timezone.now)),
                        ("confirmed_at", models.DateTimeField(blank=True, null=True)),
                        ("closed_at", models.DateTimeField(blank=True, null=True)),
                    ],
                    options={
                        "db_table": "django_orders_order",
                        "ordering": ("-created_at", "-id"),
                        "abstract": False,
                        "indexes": [
                            models.Index(
                                fields=["tenant_id", "created_at", "id"],
                                name="orders_order_tenant_keyset",
                            ),
                            models.Index(
                                fields=["tenant_id", "status", "created_at", "id"],
                                name="orders_order_status_keyset",
                            ),
                        ],
                        "constraints": [
                            models.CheckConstraint(
                                condition=models.Q(("version__gte", 1)),
                                name="orders_order_version_gte_1",
                            ),
                            models.CheckConstraint(
                                condition=models.Q(
                                    ("total_cents__isnull", True),
                                    ("total_cents__gte", 0),
                                    _connector="OR",
                                ),
                                name="orders_order_total_cents_gte_0",
                            ),
                            models.CheckConstraint(
                                condition=models.Q(
                                    ("status__in", ("draft", "confirmed", "closed"))
                                ),
                                name="orders_order_status_valid",
                            ),
                        ],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
