"""The host field: a real column (existing rows get the default) and its keyset index."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("adoption", "0001_take_over_orders")]

    operations = [
        migrations.AddField(
            model_name="order",
            name="channel",
            field=models.CharField(default="web", max_length=16),
        ),
        migrations.AddIndex(
            model_name="order",
            index=models.Index(
                fields=["tenant_id", "channel", "created_at", "id"], name="adoption_order_channel"
            ),
        ),
    ]
