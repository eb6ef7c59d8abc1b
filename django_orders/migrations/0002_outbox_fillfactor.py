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

TABLE = '"django_orders_outbox_event"'


class RunSQLOnPostgreSQL(migrations.RunSQL):
    """``RunSQL`` that runs on PostgreSQL only (``sqlmigrate`` shows it there)."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)


class Migration(migrations.Migration):
    dependencies = [("django_orders", "0001_initial")]

    operations = [
        RunSQLOnPostgreSQL(
            sql=f"ALTER TABLE {TABLE} SET (fillfactor = 50)",
            reverse_sql=f"ALTER TABLE {TABLE} RESET (fillfactor)",
        ),
    ]
