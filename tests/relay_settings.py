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
    "loggers": {
        "django_orders": {"handlers": ["stderr"], "level": "INFO"},
        # The idle/woken lines tell a test when the relay is asleep.
        "django_orders.relay": {"level": "DEBUG"},
    },
}

# A relay is a long-running process: keep its connection between batches, as the
# operations guide recommends (CONN_MAX_AGE=0 would reconnect on every loop).
DATABASES["default"]["CONN_MAX_AGE"] = 600  # noqa: F405
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True  # noqa: F405
