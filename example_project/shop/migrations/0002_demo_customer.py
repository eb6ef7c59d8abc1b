"""The demo's customer: Acme Ltd of tenant shop-1, credit limit 1,000.00 (100,000 cents).

Created first in a fresh database, it has id 1, which the commands ``make demo`` prints use.
"""

from django.db import migrations


def add_customer(apps, schema_editor):
    Customer = apps.get_model("shop", "Customer")
    Customer.objects.using(schema_editor.connection.alias).get_or_create(
        tenant_id="shop-1", name="Acme Ltd", defaults={"credit_limit_cents": 100_000}
    )


def remove_customer(apps, schema_editor):
    Customer = apps.get_model("shop", "Customer")
    Customer.objects.using(schema_editor.connection.alias).filter(
        tenant_id="shop-1", name="Acme Ltd", orders__isnull=True
    ).delete()


class Migration(migrations.Migration):
    dependencies = [("shop", "0001_initial")]

    operations = [migrations.RunPython(add_customer, remove_customer)]
