"""Leave room on each page of the outbox table so that a claim is a HOT update.

A claim sets ``lease_token``, ``leased_until`` and ``attempts`` — columns no index covers
— so PostgreSQL can write the new row version on the same page without touching any
index (a heap-only tuple), provided the page has room for it. Full pages (the default
fillfactor 100) forced every claim to write a new tuple elsewhere plus one entry in each
of four indexes. Measured (docs/benchmarks.md, Finding 7): the claim's database CPU per
event halves at fillfactor 50. Only new pages are affected; nothing is rewritten, and the
lock taken (SHARE UPDATE EXCLUSIVE) does not block reads or writes. Other databases:
nothing to do.
"""

from django.db import migrations

from django_orders.migrations._operations import RunSQLOnPostgreSQL

TABLE = '"django_orders_outbox_event"'


class Migration(migrations.Migration):
    dependencies = [("django_orders", "0001_initial")]

    operations = [
        RunSQLOnPostgreSQL(
            sql=f"ALTER TABLE {TABLE} SET (fillfactor = 50)",
            reverse_sql=f"ALTER TABLE {TABLE} RESET (fillfactor)",
        ),
    ]
