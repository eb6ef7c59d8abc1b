"""Settings of the swapped-model suite: the example project's ``shop.Order`` is the order
model, with its host fields, serializers and credit-limit rule (docs/guide/extending.md).

Which order model is in force is fixed per process (as ``AUTH_USER_MODEL``), so these
tests run in a pytest process of their own: ``make test`` runs
``pytest --ds=tests.swapped.settings tests/swapped`` after the main suite, on the same
database engine (``DB``), in a test database of its own.
"""

import copy
import sys
from pathlib import Path

from tests.settings import *  # noqa: F403
from tests.settings import DATABASES, DJANGO_ORDERS, INSTALLED_APPS, MIDDLEWARE

# The example project's app is the host under test: the guide quotes its code.
EXAMPLE_PROJECT = Path(__file__).resolve().parents[2] / "example_project"
if str(EXAMPLE_PROJECT) not in sys.path:
    sys.path.insert(0, str(EXAMPLE_PROJECT))

INSTALLED_APPS = [*INSTALLED_APPS, "shop"]

DJANGO_ORDERS_ORDER_MODEL = "shop.Order"

DJANGO_ORDERS = {
    **DJANGO_ORDERS,
    "CREATE_SERIALIZER": "shop.serializers.ShopOrderCreateSerializer",
    "CONFIRM_SERIALIZER": "shop.serializers.ShopOrderConfirmSerializer",
    "LIST_FILTER_SERIALIZER": "shop.serializers.ShopOrderFilterSerializer",
    "ORDER_RULES": ["shop.rules.credit_limit"],
    "EVENT_ENRICHERS": ["shop.correlation.add_correlation_id"],
}

MIDDLEWARE = [*MIDDLEWARE, "shop.correlation.CorrelationIdMiddleware"]
ROOT_URLCONF = "tests.swapped.urls"

# A test database of its own: the main suite's (kept by --reuse-db) has no shop tables.
DATABASES = copy.deepcopy(DATABASES)
_default = DATABASES["default"]
if _default["ENGINE"].endswith("sqlite3"):
    _test_name = Path(_default["TEST"]["NAME"])
    _default["TEST"] = {"NAME": str(_test_name.with_name(f"{_test_name.stem}_swapped.sqlite3"))}
else:
    _default["TEST"] = {"NAME": f"test_{_default['NAME']}_swapped"}
