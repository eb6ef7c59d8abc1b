"""docs/guide/extending.md, "An existing installation": the orders of an installation move
to a host order model that takes ``django_orders_order`` over — rows, ids, versions,
timestamps and index names kept — and gain a real column, on PostgreSQL and SQLite.

Which order model is in force is fixed per process, so each step runs in a subprocess
against a scratch database: migrate with the package's model, write orders, switch
``DJANGO_ORDERS_ORDER_MODEL`` to ``adoption.Order`` (tests/adoption), migrate, use the API.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from tests.relay_runs import ROOT, database_env

pytestmark = [pytest.mark.slow, pytest.mark.django_db]

BEFORE = "tests.settings"
AFTER = "tests.adoption.settings"


@pytest.fixture
def installation() -> Iterator[dict[str, str]]:
    """The environment of a scratch database, dropped afterwards."""
    if connection.vendor != "postgresql":
        with tempfile.TemporaryDirectory(prefix="orders-adoption-") as path:
            yield database_env(str(Path(path) / "installation.sqlite3"))
        return
    name = f"{connection.settings_dict['NAME']}_adoption"
    with connection._nodb_cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
        cursor.execute(f'CREATE DATABASE "{name}"')
    try:
        yield database_env(name)
    finally:
        with connection._nodb_cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run(env: dict[str, str], settings: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, *args],
        env={**env, "DJANGO_SETTINGS_MODULE": settings, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def step(env: dict[str, str], settings: str, name: str) -> dict[str, Any]:
    output = run(env, settings, "-m", "tests.adoption.steps", name)
    document: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return document


def test_an_installation_moves_its_orders_to_a_host_model(installation: dict[str, str]) -> None:
    run(installation, BEFORE, "-m", "django", "migrate", "--noinput")
    before = step(installation, BEFORE, "before")

    run(installation, AFTER, "-m", "django", "migrate", "--noinput")
    # The host's migrations describe its model exactly; the package's need nothing new.
    run(installation, AFTER, "-m", "django", "makemigrations", "--check", "--dry-run")
    after = step(installation, AFTER, "after")

    assert (after["model"], after["table"]) == ("adoption.Order", "django_orders_order")
    # Every order kept, as it was, newest first, with the host field's default.
    draft, confirmed = before["orders"]
    assert after["listed"] == [{**confirmed, "channel": "web"}, {**draft, "channel": "web"}]
    # The old draft goes on where it was: confirmed from its version 1.
    status, body = after["confirm"]
    assert status == 200
    assert body["id"] == draft["id"]
    assert (body["version"], body["status"], body["channel"]) == (2, "confirmed", "web")
    assert after["event"] == body
    status, body = after["create"]
    assert (status, body["version"], body["channel"]) == (201, 1, "web")
    # One table: a real column added, the package's index names still there.
    assert "channel" in after["columns"]
    assert {
        "orders_order_tenant_keyset",
        "orders_order_status_keyset",
        "adoption_order_channel",
    } <= set(after["constraints"])
