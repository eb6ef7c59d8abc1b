"""Settings of the replica suite: a real primary and its streaming replica.

``scripts/pg_replica_pair.sh run -- pytest --ds=tests.replica.settings tests/replica`` (which
``make test`` runs after the main suite) creates the pair on free ports and passes their
URLs as ``ORDERS_PRIMARY_URL`` and ``ORDERS_REPLICA_URL``. The replica alias is the
recipe of docs/guide/replicas.md: ``ReplicaRouter``, ``READ_REPLICAS``, and a test
``MIRROR`` of ``default`` — Django then gives it the test database's name, while it keeps
connecting to the replica's server, where the test database arrives by streaming.
"""

import copy
import os

import dj_database_url

from tests.settings import *  # noqa: F403
from tests.settings import DATABASES, DJANGO_ORDERS

#: Read by tests/conftest.py: this process collects tests/replica only.
ORDERS_TEST_SUITE = "replica"

DATABASES = copy.deepcopy(DATABASES)
_primary_url = os.environ.get("ORDERS_PRIMARY_URL")
_replica_url = os.environ.get("ORDERS_REPLICA_URL")
if _primary_url and _replica_url:
    DATABASES["default"] = dj_database_url.parse(_primary_url, conn_max_age=0)
    DATABASES["default"]["NAME"] = "django_orders"
    DATABASES["replica"] = dj_database_url.parse(_replica_url, conn_max_age=0)
    DATABASES["replica"]["NAME"] = "django_orders"
else:  # the tests skip (tests/replica/conftest.py); the alias exists for the settings only
    DATABASES["replica"] = copy.deepcopy(DATABASES["default"])
DATABASES["replica"]["TEST"] = {"MIRROR": "default"}

DATABASE_ROUTERS = ["django_orders.routers.ReplicaRouter"]
DJANGO_ORDERS = {**DJANGO_ORDERS, "READ_REPLICAS": ["replica"]}

# A replica that cannot be reached (a down server, a broken network): nothing listens on
# port 1 of the loopback, so connecting fails at once. A test MIRROR, like "replica": no
# test database is made or flushed for it.
DATABASES["unreachable"] = {
    **copy.deepcopy(DATABASES["replica"]),
    "HOST": "127.0.0.1",
    "PORT": "1",
    "TEST": {"MIRROR": "default"},
}
