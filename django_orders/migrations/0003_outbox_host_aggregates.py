"""The outbox carries the host's own aggregates and CloudEvents extension attributes.

- ``aggregate_id`` becomes text: a host's aggregates may have any id. On PostgreSQL the
  column's type changes in place (``uuid::varchar``, the canonical hyphenated form: the
  table is rewritten once, under an exclusive lock — run it when the relay is stopped and
  writes are few). On SQLite Django kept UUIDs as 32 hex digits; they are rewritten in the
  hyphenated form ``str(uuid)`` gives, which every event written from now on uses, so the
  events of one order keep matching one another.
- ``extensions``: CloudEvents extension attributes added when the event is recorded.
- ``OutboxSequence``: the per-aggregate version counter of ``record_event()``.
- PostgreSQL: fillfactor 45 (was 50, migration 0002). A claim fills ``lease_token`` and
  ``leased_until`` (24 bytes) in each row; with half a page free, the last row of a page
  filled by inserts sometimes found no room for its new version and the claim was no
  longer a heap-only update for it (measured: 28 of 200 once the rows grew by the text
  ``aggregate_id``). 45 leaves room for the growth at any row size.

Going back is possible while the outbox holds only order events (UUID ids).
"""

from django.db import migrations, models

from django_orders.migrations._operations import RunSQLOnPostgreSQL

EVENTS = "django_orders_outbox_event"


def hyphenate_sqlite_uuids(apps, schema_editor):
    if schema_editor.connection.vendor != "sqlite":
        return  # PostgreSQL's uuid → varchar cast writes the hyphenated form already
    schema_editor.execute(
        f"UPDATE {EVENTS} SET aggregate_id = lower("
        "substr(aggregate_id, 1, 8) || '-' || substr(aggregate_id, 9, 4) || '-' || "
        "substr(aggregate_id, 13, 4) || '-' || substr(aggregate_id, 17, 4) || '-' || "
        "substr(aggregate_id, 21, 12)) WHERE length(aggregate_id) = 32"
    )


def unhyphenate_sqlite_uuids(apps, schema_editor):
    if schema_editor.connection.vendor != "sqlite":
        return
    schema_editor.execute(
        f"UPDATE {EVENTS} SET aggregate_id = replace(aggregate_id, '-', '') "
        "WHERE length(aggregate_id) = 36"
    )


class Migration(migrations.Migration):
    dependencies = [
        ("django_orders", "0002_outbox_fillfactor"),
    ]

    operations = [
        migrations.AddField(
            model_name="outboxevent",
            name="extensions",
            field=models.JSONField(
                blank=True, default=dict, help_text="CloudEvents extension attributes, by name."
            ),
        ),
        migrations.AlterField(
            model_name="outboxevent",
            name="aggregate_id",
            field=models.CharField(max_length=128),
        ),
        migrations.RunPython(hyphenate_sqlite_uuids, unhyphenate_sqlite_uuids, elidable=False),
        migrations.AlterField(
            model_name="outboxevent",
            name="payload",
            field=models.JSONField(
                help_text="The CloudEvents data: the aggregate right after the change."
            ),
        ),
        RunSQLOnPostgreSQL(
            sql=f'ALTER TABLE "{EVENTS}" SET (fillfactor = 45)',
            reverse_sql=f'ALTER TABLE "{EVENTS}" SET (fillfactor = 50)',
        ),
        migrations.CreateModel(
            name="OutboxSequence",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("tenant_id", models.CharField(max_length=64)),
                ("aggregate_type", models.CharField(max_length=64)),
                ("aggregate_id", models.CharField(max_length=128)),
                ("last_version", models.PositiveIntegerField()),
            ],
            options={
                "db_table": "django_orders_outbox_sequence",
                "constraints": [
                    models.UniqueConstraint(
                        fields=("tenant_id", "aggregate_type", "aggregate_id"),
                        name="orders_outbox_sequence_aggregate_unique",
                    )
                ],
            },
        ),
    ]
