"""Settings of relay subprocesses started by the tests: ``tests.settings`` plus the
``DJANGO_ORDERS`` overrides in ``ORDERS_RELAY_SETTINGS`` (JSON), logging to stderr."""

import json
import os

from tests.settings import *  # noqa: F403

DJANGO_ORDERS = json.loads(os.environ.get("ORDERS_RELAY_SETTINGS") or "{}")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(name)s %(levelname)s %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {"django_orders": {"handlers": ["stderr"], "level": "INFO"}},
}
