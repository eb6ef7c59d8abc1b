"""Mark the order model swappable in the migration state (``DJANGO_ORDERS_ORDER_MODEL``).

Nothing changes in the database. With the order model swapped for a host model
(docs/guide/extending.md), Django skips every later operation of this app on
``django_orders.Order``, as it does for ``auth.User`` under ``AUTH_USER_MODEL``, so a
future migration of the package never alters the host's table. (``makemigrations`` does
not write this: ``swappable`` is not an option it compares.)

Migration 0001 predates it and therefore creates ``django_orders_order`` in every
database, swapped or not; a host model may take that table over (the adoption path of the
guide) or leave it empty.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("django_orders", "0004_outbox_extensions_default")]

    operations = [
        # AlterModelOptions merges these into the model's state; "ordering" is repeated
        # because the operation drops the alterable options it is not given.
        migrations.AlterModelOptions(
            name="order",
            options={"ordering": ("-created_at", "-id"), "swappable": "DJANGO_ORDERS_ORDER_MODEL"},
        ),
    ]
