"""A relay's heartbeat: the row that tells other processes it is alive and what it holds.

Each relay run has a :class:`~django_orders.models.RelayHeartbeat` row, inserted when it
starts, beaten by a thread of its own every third of ``OUTBOX_LEASE`` (one ``UPDATE`` by
primary key: the time, the batches it holds leased), and deleted when it stops cleanly.
A relay is *alive* while its last beat is younger than ``OUTBOX_LEASE``: a killed relay
drops out of :func:`live_relays` within one lease, as its claims come back within one.

The same thread measures the backlog for the metrics hook every
``OUTBOX_METRICS_INTERVAL``, when the hook wants it (:func:`~django_orders.outbox.metrics.
measures_backlog`): a query the size of ``orders_outbox_status``'s, off the relay's path.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
import uuid
from typing import Any

from django.db import DatabaseError, connections
from django.db.models.functions import Now
from django.utils import timezone

from django_orders.conf import orders_settings
from django_orders.models import RelayHeartbeat
from django_orders.outbox.lease import LeaseKeeper
from django_orders.outbox.maintenance import outbox_status
from django_orders.outbox.metrics import Backlog, RelayMetrics, measures_backlog

logger = logging.getLogger("django_orders.relay")

#: Rows of relays that stopped beating this long ago are deleted (a crashed relay's row
#: stays meanwhile, for whoever wonders where it went).
KEEP_STALE_ROWS = dt.timedelta(hours=1)


def database_now(using: str) -> dt.datetime:
    """Now by the clock heartbeats are written with: the database's on PostgreSQL, as for
    leases (hosts whose clocks disagree still agree on who is alive), else this host's."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return timezone.now()
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement_timestamp()")
        (now,) = cursor.fetchone()
    return now


def live_relays(using: str | None = None, now: dt.datetime | None = None) -> list[RelayHeartbeat]:
    """The relays whose last beat is younger than ``OUTBOX_LEASE``, oldest first."""
    heartbeats = RelayHeartbeat.objects.using(using)
    now = now or database_now(heartbeats.db)
    return list(heartbeats.filter(last_beat_at__gt=now - orders_settings.OUTBOX_LEASE))


def purge_stale_heartbeats(using: str | None = None, now: dt.datetime | None = None) -> int:
    """Delete the rows of relays that stopped beating over :data:`KEEP_STALE_ROWS` ago."""
    heartbeats = RelayHeartbeat.objects.using(using)
    now = now or database_now(heartbeats.db)
    deleted, _ = heartbeats.filter(last_beat_at__lt=now - KEEP_STALE_ROWS).delete()
    return deleted


class Heartbeat:
    """The heartbeat of one relay run (module docstring)."""

    def __init__(
        self,
        using: str,
        keeper: LeaseKeeper,
        metrics: RelayMetrics,
        *,
        publisher: str,
    ) -> None:
        self.using = using
        self.keeper = keeper
        self.metrics = metrics
        self.publisher = publisher
        #: The relay run's id, its row's primary key.
        self.id = uuid.uuid4()
        self.started_at = timezone.now()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._inserted = False

    def start(self, *, threaded: bool) -> None:
        """Insert the row (purging stale ones first); with ``threaded``, beat on a thread
        of its own. Without (a relay inside a caller's transaction), the row is only
        inserted and deleted: other connections would not see it anyway."""
        self.started_at = timezone.now()
        self._inserted = True
        try:
            purge_stale_heartbeats(self.using)
            self._insert(last_beat_at=self._now())
        except DatabaseError:
            # The relay itself waits for the database to come back; so does the row: the
            # first beat that finds it missing writes it.
            logger.exception("Writing the relay's heartbeat failed; it is written again later")
        if threaded:
            self._thread = threading.Thread(
                target=self._run, name="orders-relay-heartbeat", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """End the thread and delete the row: a relay that stopped is not alive."""
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if not self._inserted:
            return
        try:
            RelayHeartbeat.objects.using(self.using).filter(id=self.id).delete()
        except Exception:
            logger.exception("Removing the relay's heartbeat failed; it expires by itself")

    # -- the thread -------------------------------------------------------------------------

    def _run(self) -> None:
        interval = max(0.05, orders_settings.OUTBOX_LEASE.total_seconds() / 3)
        backlog_every = orders_settings.OUTBOX_METRICS_INTERVAL.total_seconds()
        next_backlog = time.monotonic() if measures_backlog(self.metrics) else None
        next_beat = time.monotonic() + interval
        try:
            while True:
                if next_backlog is not None and time.monotonic() >= next_backlog:
                    self._measure_backlog()
                    next_backlog = time.monotonic() + backlog_every
                due = min(next_beat, next_backlog if next_backlog is not None else next_beat)
                if self._stopped.wait(max(0.0, due - time.monotonic())):
                    return
                if time.monotonic() >= next_beat:
                    self._beat()
                    next_beat = time.monotonic() + interval
        finally:
            connections[self.using].close()

    def _beat(self) -> None:
        held = self.keeper.held()
        fields: dict[str, Any] = {
            "last_beat_at": self._now(),
            "leased_batches": len(held),
            "leased_events": sum(len(claim.events) for claim in held),
            "lease_tokens": [str(claim.token) for claim in held],
        }
        try:
            heartbeats = RelayHeartbeat.objects.using(self.using)
            if not heartbeats.filter(id=self.id).update(**fields):
                # Purged while this relay could not beat (a long stall): it is back.
                self._insert(**fields)
        except Exception:
            logger.exception("The relay's heartbeat failed")
            # Reconnect on the next beat (the database may have restarted).
            connections[self.using].close()

    def _measure_backlog(self) -> None:
        try:
            now = database_now(self.using)
            tenants = outbox_status(using=self.using, now=now)
            oldest = [t["oldest_pending"] for t in tenants if t["oldest_pending"] is not None]
            backlog = Backlog(
                pending=sum(t["pending"] for t in tenants),
                held_back=sum(t["held_back"] for t in tenants),
                dead=sum(t["dead"] for t in tenants),
                oldest_pending_age=(now - min(oldest)).total_seconds() if oldest else None,
                live_relays=len(live_relays(self.using, now)),
            )
            self.metrics.backlog_measured(backlog)
        except Exception:
            logger.exception("Measuring the outbox backlog failed")
            connections[self.using].close()

    def _insert(self, **fields: Any) -> None:
        RelayHeartbeat.objects.using(self.using).create(
            id=self.id,
            host=socket.gethostname()[:255],
            pid=os.getpid(),
            publisher=self.publisher[:200],
            started_at=self.started_at,
            **fields,
        )

    def _now(self) -> Any:
        # The database's clock on PostgreSQL (STATEMENT_TIMESTAMP()), as for leases.
        return Now() if connections[self.using].vendor == "postgresql" else timezone.now()
