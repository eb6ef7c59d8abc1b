"""The swapped-model suite needs its own settings (see tests/swapped/settings.py)."""

import pytest
from django.conf import settings

if not hasattr(settings, "DJANGO_ORDERS_ORDER_MODEL"):
    raise pytest.UsageError(
        "tests/swapped runs with the swapped order model: "
        "pytest --ds=tests.swapped.settings tests/swapped (make test runs it)"
    )
