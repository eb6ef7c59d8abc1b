"""Shared fixtures. Tests talk to real services: PostgreSQL (or SQLite with DB=sqlite),
RabbitMQ and Redis on loopback. Nothing here mocks a database or a broker."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connection
from rest_framework.test import APIClient

from tests.relay_helpers import Receiver


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from django.conf import settings

    if "postgresql" in settings.DATABASES["default"]["ENGINE"]:
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL (run with DB=postgres)")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def api() -> APIClient:
    """An API client; pass ``HTTP_X_TENANT_ID=...`` per request or use ``tenant_api``."""
    return APIClient()


@pytest.fixture
def tenant_api() -> APIClient:
    """An API client that sends ``X-Tenant-Id: shop-1`` on every request."""
    client = APIClient()
    client.credentials(HTTP_X_TENANT_ID="shop-1")
    return client


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A real local HTTP server that records the webhooks the relay delivers."""
    with Receiver() as running:
        yield running


@pytest.fixture
def log_dir() -> Iterator[Path]:
    """Relay logs. Not pytest's tmp_path: parallel pytest runs prune each other's."""
    with tempfile.TemporaryDirectory(prefix="orders-relay-") as path:
        yield Path(path)


@pytest.fixture
def is_postgres() -> bool:
    return connection.vendor == "postgresql"


def pytest_configure(config: pytest.Config) -> None:
    import os

    import django_orders

    if os.environ.get("ORDERS_TEST_WHEEL") and "site-packages" not in django_orders.__file__:
        raise pytest.UsageError(f"expected the installed wheel, imported {django_orders.__file__}")
    driver = os.environ.get("ORDERS_PG_DRIVER")
    if driver:
        from django.db.backends.postgresql.psycopg_any import is_psycopg3

        if driver != ("psycopg" if is_psycopg3 else "psycopg2"):
            raise pytest.UsageError(f"ORDERS_PG_DRIVER={driver}, but Django did not load it")
