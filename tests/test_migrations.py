"""The shipped migrations match the models (a model change without its migration fails)."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection

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
    finally:
        call_command("migrate", "django_orders", verbosity=0)
    if postgres:
        assert outbox_reloptions() == ["fillfactor=50"]
