"""The swapped-model suite needs its own settings (see tests/swapped/settings.py)."""

import pytest
from django.conf import settings

from tests.orders_api import OrdersClient

if not hasattr(settings, "DJANGO_ORDERS_ORDER_MODEL"):
    raise pytest.UsageError(
        "tests/swapped runs with the swapped order model: "
        "pytest --ds=tests.swapped.settings tests/swapped (make test runs it)"
    )

# Installed only with those settings: imported once they are known to be in force.
from shop.models import Customer


@pytest.fixture
def api() -> OrdersClient:
    """An API client acting for tenant shop-1."""
    return OrdersClient()


@pytest.fixture
def customer() -> Customer:
    """A customer of shop-1 with a credit limit of 1,000 cents."""
    return Customer.objects.create(tenant_id="shop-1", name="Test Co", credit_limit_cents=1_000)
