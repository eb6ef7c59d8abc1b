"""The relay heartbeat table: each running relay's row, so other processes (``orders_outbox_status``) see which relays are alive and what they hold."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('django_orders', '0005_order_swappable'),
    ]

    operations = [
        migrations.CreateModel(
            name='RelayHeartbeat',
            fields=[
                ('id', models.UUIDField(editable=False, help_text="The relay's run id.", primary_key=True, serialize=False)),
                ('host', models.CharField(max_length=255)),
                ('pid', models.PositiveIntegerField()),
                ('publisher', models.CharField(max_length=200)),
                ('started_at', models.DateTimeField()),
                ('last_beat_at', models.DateTimeField()),
                ('leased_batches', models.PositiveIntegerField(default=0, help_text='Batches the relay holds leased.')),
                ('leased_events', models.PositiveIntegerField(default=0, help_text='Events in those batches.')),
                ('lease_tokens', models.JSONField(blank=True, default=list, help_text='The lease tokens of those batches.')),
            ],
            options={
                'db_table': 'django_orders_relay_heartbeat',
                'ordering': ('started_at', 'id'),
                'indexes': [models.Index(fields=['last_beat_at'], name='orders_relay_last_beat')],
            },
        ),
    ]
