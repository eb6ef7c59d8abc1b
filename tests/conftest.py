"""Shared fixtures. Tests talk to real services: PostgreSQL (or SQLite with DB=sqlite),
RabbitMQ and Redis on loopback. Nothing here mocks a database or a broker."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import rest_framework.throttling
import rest_framework.views
from django.core.servers.basehttp import ThreadedWSGIServer
from django.db import connection
from django.test.testcases import LiveServerThread
from rest_framework.test import APIClient

from tests import brokers
from tests.orders_api import OrdersClient
from tests.receiver import Receiver

# DRF binds APIView's default classes and SimpleRateThrottle.THROTTLE_RATES to the settings
# in force when these modules are first imported. Import them now, under tests/settings.py,
# so that whichever test happens to import them first cannot leave its override_settings
# behind in them. (A test that needs throttle rates sets THROTTLE_RATES on the class.)
assert rest_framework.views.APIView.permission_classes
assert rest_framework.throttling.SimpleRateThrottle.THROTTLE_RATES is not None

SWAPPED_TESTS = Path(__file__).resolve().parent / "swapped"
REPLICA_TESTS = Path(__file__).resolve().parent / "replica"


def _suite_in_force() -> Path | None:
    """The suite of its own these settings run, or ``None`` for the main suite."""
    from django.conf import settings

    if hasattr(settings, "DJANGO_ORDERS_ORDER_MODEL"):
        return SWAPPED_TESTS
    if getattr(settings, "ORDERS_TEST_SUITE", None) == "replica":
        return REPLICA_TESTS
    return None


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """A process runs with the package's order model, with the host's swapped one
    (tests/swapped/settings.py), or against a primary and its replica
    (tests/replica/settings.py), never two of them: the tests of the others are left out
    (``make test`` runs the suites one after the other)."""
    suite = _suite_in_force()
    if collection_path in (SWAPPED_TESTS, REPLICA_TESTS):
        return None if collection_path == suite else True
    is_test_module = collection_path.suffix == ".py" and collection_path.name.startswith("test_")
    if suite is not None and is_test_module and suite not in collection_path.parents:
        return True
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from django.conf import settings

    if "postgresql" in settings.DATABASES["default"]["ENGINE"]:
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL (run with DB=postgres)")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def api() -> OrdersClient:
    """A client of the orders API: JSON bodies, ``X-Tenant-Id: shop-1`` (tests/orders_api.py)."""
    return OrdersClient()


@pytest.fixture
def drf_client() -> APIClient:
    """DRF's test client, no tenant: pass ``HTTP_X_TENANT_ID=...`` or use ``tenant_api``."""
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
def amqp() -> Iterator[Any]:
    """A blocking connection to the machine's RabbitMQ (skipped when it does not answer)."""
    yield from brokers.amqp_connection()


@pytest.fixture
def redis_client() -> Iterator[Any]:
    """A client of the machine's Redis (skipped when it does not answer)."""
    yield from brokers.redis_connection()


@pytest.fixture
def log_dir() -> Iterator[Path]:
    """Relay logs. Not pytest's tmp_path: parallel pytest runs prune each other's."""
    with tempfile.TemporaryDirectory(prefix="orders-relay-") as path:
        yield Path(path)


class _WideServer(ThreadedWSGIServer):
    # Django's default listen backlog (10) resets connections when 50 clients connect at
    # once; a real deployment's server listens with a far longer queue.
    request_queue_size = 128


class _LiveServerThread(LiveServerThread):
    server_class = _WideServer


@pytest.fixture
def live_port() -> Iterator[int]:
    """A live, threaded HTTP server on the test database, as ``LiveServerTestCase`` runs it
    (without the static-files wrapper: the test settings have no ``STATIC_URL``): one
    thread and one database connection per request, as under a real server."""
    thread = _LiveServerThread("127.0.0.1", static_handler=lambda app: app)
    thread.daemon = True
    thread.start()
    thread.is_ready.wait()
    if thread.error:
        raise thread.error
    yield thread.port
    thread.terminate()


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
