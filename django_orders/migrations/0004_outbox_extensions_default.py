"""The outbox's ``extensions`` column gets a database default (``'{}'``): rows written by
SQL of their own (a host's, a benchmark's) need not name it. A catalogue change only."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("django_orders", "0003_outbox_host_aggregates"),
    ]

    operations = [
        migrations.AlterField(
            model_name="outboxevent",
            name="extensions",
            field=models.JSONField(
                blank=True,
                db_default=models.Value({}, output_field=models.JSONField()),
                default=dict,
                help_text="CloudEvents extension attributes, by name.",
            ),
        ),
    ]
