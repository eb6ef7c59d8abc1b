"""The shipped migrations match the models (a model change without its migration fails)."""

import uuid
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from django_orders.models import OutboxEvent


@pytest.mark.django_db
def test_no_missing_migrations() -> None:
    out = StringIO()
    try:
        call_command("makemigrations", "django_orders", check=True, dry_run=True, stdout=out)
    except SystemExit:  # pragma: no cover - the failure path
        pytest.fail(f"django_orders has model changes without a migration:\n{out.getvalue()}")
    assert "No changes detected" in out.getvalue()


def outbox_reloptions() -> list[str] | None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT reloptions FROM pg_class WHERE relname = %s", [OutboxEvent._meta.db_table]
        )
        return cursor.fetchone()[0]


def sqlmigrate_0002(*args: str) -> str:
    out = StringIO()
    call_command("sqlmigrate", "django_orders", "0002", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_migration_0002_sets_the_fillfactor_on_postgresql_only_and_reverses() -> None:
    """sqlmigrate shows a DBA the statement; migrating back to 0001 and forward again
    works on every database."""
    postgres = connection.vendor == "postgresql"
    forwards, backwards = sqlmigrate_0002(), sqlmigrate_0002("--backwards")
    assert ("SET (fillfactor = 50)" in forwards) is postgres
    assert ("RESET (fillfactor)" in backwards) is postgres
    assert "ALTER TABLE" not in forwards + backwards or postgres
    try:
        call_command("migrate", "django_orders", "0001", verbosity=0)
        if postgres:
            assert outbox_reloptions() is None
        call_command("migrate", "django_orders", "0002", verbosity=0)
        if postgres:
            assert outbox_reloptions() == ["fillfactor=50"]
    finally:
        call_command("migrate", "django_orders", verbosity=0)
    if postgres:
        assert outbox_reloptions() == ["fillfactor=45"]


@pytest.mark.django_db(transaction=True)
def test_migration_0003_keeps_the_events_of_an_order_one_aggregate() -> None:
    """An order event written before 0003 (a UUID aggregate id: 32 hex digits on SQLite, a
    uuid on PostgreSQL) reads back, after it, as the text every later event of that order
    is written with — so the order's events still block one another in version order."""
    order_id = uuid.uuid4()
    try:
        call_command("migrate", "django_orders", "0002", verbosity=0)
        stored = order_id.hex if connection.vendor == "sqlite" else str(order_id)
        now = timezone.now()
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO django_orders_outbox_event (id, tenant_id, aggregate_type, "
                "aggregate_id, aggregate_version, type, payload, created_at, status, attempts, "
                "available_at, last_error) VALUES (%s, 'shop-1', 'order', %s, 1, "
                "'order.created', '{}', %s, 'pending', 0, %s, '')",
                [
                    uuid.uuid4().hex if connection.vendor == "sqlite" else str(uuid.uuid4()),
                    stored,
                    now,
                    now,
                ],
            )
    finally:
        call_command("migrate", "django_orders", verbosity=0)
    (event,) = OutboxEvent.objects.all()
    assert event.aggregate_id == str(order_id)
    assert event.extensions == {}
    assert OutboxEvent.objects.filter(aggregate_id=order_id).count() == 1

    # Back to 0002 while the outbox holds order events only, and forward again.
    call_command("migrate", "django_orders", "0002", verbosity=0)
    call_command("migrate", "django_orders", verbosity=0)
    assert OutboxEvent.objects.get().aggregate_id == str(order_id)
