"""The replica suite: a real streaming replica (see tests/replica/settings.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from django.conf import settings
from django.db import connections, transaction

from tests.waiting import wait_until

if getattr(settings, "ORDERS_TEST_SUITE", None) != "replica":
    raise pytest.UsageError(
        "tests/replica runs against a primary and its replica: "
        "scripts/pg_replica_pair.sh run -- pytest --ds=tests.replica.settings tests/replica "
        "(make test runs it)"
    )

_UNAVAILABLE = os.environ.get("ORDERS_REPLICA_UNAVAILABLE") or (
    None
    if os.environ.get("ORDERS_PRIMARY_URL") and os.environ.get("ORDERS_REPLICA_URL")
    else "no primary/replica pair: run through scripts/pg_replica_pair.sh (make test does)"
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _UNAVAILABLE:
        skip = pytest.mark.skip(reason=f"needs a streaming replica: {_UNAVAILABLE}")
        for item in items:
            item.add_marker(skip)


def primary_lsn() -> str:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT pg_current_wal_insert_lsn()::text")
        return str(cursor.fetchone()[0])


def replayed_past(lsn: str) -> bool:
    """Whether the replica has replayed the primary's WAL up to ``lsn``."""
    with connections["replica"].cursor() as cursor:
        cursor.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [lsn])
        return bool(cursor.fetchone()[0])


def wait_replicated(timeout: float = 20) -> None:
    """Wait until the replica has everything the primary has committed so far."""
    lsn = primary_lsn()
    wait_until(lambda: replayed_past(lsn), timeout, f"the replica to replay up to {lsn}")


class Replay:
    """Pause and resume the replica's replay of the primary's WAL."""

    def _call(self, function: str) -> None:
        # As the session's superuser, even while the test acts as an app role (SET ROLE).
        with transaction.atomic(using="replica"), connections["replica"].cursor() as cursor:
            cursor.execute("SET LOCAL ROLE NONE")
            cursor.execute(f"SELECT {function}()")

    def _state(self) -> str:
        with connections["replica"].cursor() as cursor:
            cursor.execute("SELECT pg_get_wal_replay_pause_state()")
            return str(cursor.fetchone()[0])

    def pause(self) -> None:
        """Stop replaying: from now on the replica lags whatever the primary commits."""
        self._call("pg_wal_replay_pause")
        wait_until(lambda: self._state() == "paused", 20, "the replica's replay to pause")

    def resume(self) -> None:
        self._call("pg_wal_replay_resume")
        wait_until(lambda: self._state() == "not paused", 20, "the replica's replay to resume")


@pytest.fixture
def replay() -> Iterator[Replay]:
    """The replica caught up with the primary, and its replay to pause; resumed after."""
    wait_replicated()
    control = Replay()
    try:
        yield control
    finally:
        control.resume()
