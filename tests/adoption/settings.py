"""The installation after the adoption: ``adoption.Order`` is the order model."""

from tests.settings import *  # noqa: F403
from tests.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.adoption"]
DJANGO_ORDERS_ORDER_MODEL = "adoption.Order"
