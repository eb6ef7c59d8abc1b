"""Leave room on each page of the outbox table so that a claim is a HOT update.

A claim sets ``lease_token``, ``leased_until`` and ``attempts`` — columns no index covers
— so PostgreSQL can write the new row version on the same page without touching any
index (a heap-only tuple), provided the page has room for it. Full pages (the default
fillfactor 100) forced every claim to write a new tuple elsewhere plus one entry in each
of four indexes. Measured (docs/benchmarks.md): the claim's database CPU per event halves
at fillfactor 50. Only new pages are affected; nothing is rewritten. Other databases:
nothing to do.
"""

from django.db import migrations

TABLE = "django_orders_outbox_event"


def set_fillfactor(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"ALTER TABLE {schema_editor.quote_name(TABLE)} SET (fillfactor = 50)")


def reset_fillfactor(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"ALTER TABLE {schema_editor.quote_name(TABLE)} RESET (fillfactor)")


class Migration(migrations.Migration):
    dependencies = [("django_orders", "0001_initial")]

    operations = [migrations.RunPython(set_fillfactor, reset_fillfactor, elidable=False)]
