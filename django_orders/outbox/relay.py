"""The outbox relay: publishes pending events until stopped (or, with ``once``, drained).

``manage.py orders_outbox_relay`` is a thin command over :class:`Relay`. Its loop::

    until stopped:
        claim, send, wait for and write back batches until nothing is due
        (a strategy: one batch at a time, or the steps overlapped — see strategies.py)
        sleep until NOTIFY, a stop, or the next poll

The pieces, each in its module of :mod:`django_orders.outbox`: the claim store
(``claims``, ``postgres``: leases, fencing, per-aggregate order), the steps of one batch
(``batches``), how they are run (``strategies``), the lease keeper (``lease``), the
wake-up (``wakeup``), the one-relay lock for SQLite (``exclusive``), the heartbeat that
tells other processes this relay is alive (``heartbeat``) and the metrics hook it reports
through (``metrics``).

Guarantees (docs/operations.md): at-least-once — an event is marked published only after
the publisher confirmed it, and a relay killed at any instant leaves at worst a lease that
runs out; per-aggregate order — only the oldest unfinished event of an aggregate is
claimable; no duplicates among healthy relays — claims skip leased rows and a lease is
renewed for as long as its batch is on its way.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from types import FrameType
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connections, router
from django.utils import timezone

from django_orders.conf import orders_settings
from django_orders.models import OutboxEvent
from django_orders.outbox.batches import Batches, BatchReport
from django_orders.outbox.claims import ClaimStore
from django_orders.outbox.exclusive import RelayAlreadyRunning, RelayLock
from django_orders.outbox.heartbeat import Heartbeat
from django_orders.outbox.lease import LeaseKeeper
from django_orders.outbox.metrics import RelayMetrics
from django_orders.outbox.postgres import claim_store_for
from django_orders.outbox.recording import NOTIFY_CHANNEL
from django_orders.outbox.strategies import Pipelined, Serial, Strategy
from django_orders.outbox.wakeup import Wakeup
from django_orders.publishers.base import Publisher, check_publisher

__all__ = ["BatchReport", "Relay", "RelayAlreadyRunning"]

logger = logging.getLogger("django_orders.relay")

#: Extra seconds past the publisher's timeout a stopping relay waits for the sends in flight.
SHUTDOWN_GRACE = 2.0


class Relay:
    """Publishes outbox events with ``publisher`` until :meth:`stop` (or drained).

    ``listen`` uses ``LISTEN/NOTIFY`` on PostgreSQL (ignored elsewhere). ``pipeline``
    lets the relay overlap its steps (:class:`~django_orders.outbox.strategies.Pipelined`)
    where it can. Signal handling is opt-in (:meth:`install_signal_handlers`, main thread
    only), so a relay can also run in a thread and be stopped with :meth:`stop`.
    ``metrics`` receives what the relay does (by default as the settings say:
    :func:`metrics_from_settings`).
    """

    def __init__(
        self,
        publisher: Publisher,
        *,
        batch_size: int | None = None,
        listen: bool = True,
        poll_interval: float | None = None,
        using: str | None = None,
        pipeline: bool = True,
        metrics: RelayMetrics | None = None,
    ) -> None:
        check_publisher(publisher)
        self.publisher = publisher
        self.batch_size = int(batch_size or orders_settings.OUTBOX_BATCH_SIZE)
        self.poll_interval = float(
            orders_settings.OUTBOX_POLL_INTERVAL if poll_interval is None else poll_interval
        )
        self.using = using or router.db_for_write(OutboxEvent)
        self.store: ClaimStore = claim_store_for(self.using)
        self.listen = listen and connections[self.using].vendor == "postgresql"
        self.wakeup = Wakeup(self.using if self.listen else None)
        self.pipeline = pipeline
        self.keeper = LeaseKeeper(self.store, orders_settings.OUTBOX_LEASE.total_seconds() / 3)
        self.metrics = metrics if metrics is not None else metrics_from_settings()
        self.batches = Batches(
            publisher,
            self.store,
            self.keeper,
            batch_size=self.batch_size,
            stopping=lambda: self.stopping,
            metrics=self.metrics,
        )
        self.heartbeat = Heartbeat(
            self.using, self.keeper, self.metrics, publisher=type(publisher).__qualname__
        )
        #: This run's id: its heartbeat row's (``orders_outbox_status`` lists it).
        self.id = self.heartbeat.id
        self.strategy: Strategy = self._serial()
        self.totals = BatchReport()
        self.batch_count = 0
        self.stopping = False
        self._signals = 0
        self._lock: RelayLock | None = None
        self._previous_handlers: dict[int, Any] = {}

    # -- the loop ---------------------------------------------------------------------------

    def run(self, *, once: bool = False) -> bool:
        """Run until :meth:`stop` (or, with ``once``, until nothing due is left).

        Returns whether every publish attempted succeeded. ``once`` takes the events due
        when it starts (and those they unblock), never one written or retried later, so
        it ends even while writes keep coming.
        """
        try:
            self._start()
            if once:
                self.strategy.drain(due_by=timezone.now())
            else:
                while not self.stopping:
                    self._close_old_connections()
                    try:
                        self.strategy.drain(due_by=None)
                    except DatabaseError:
                        logger.exception(
                            "Outbox relay: database error, retrying in %ss", self.poll_interval
                        )
                    if not self.stopping:
                        logger.debug("Nothing due, waiting up to %ss", self.poll_interval)
                        logger.debug("Woken by %s", self.wakeup.wait(self.poll_interval))
        finally:
            self._finish()
        return self.totals.failed == 0

    def process_batch(self, *, due_by: Any = None) -> BatchReport | None:
        """Claim, publish and write back one batch on this thread; ``None`` when nothing
        was due (or the relay is stopping: a claim is then given back at once)."""
        return self._serial().process_one(due_by)

    def stop(self) -> None:
        """Stop claiming; finish the sends in flight and give back the rest of the batch.

        Thread- and signal-safe. The publisher is told through ``request_stop()``, so a
        stop does not wait for a whole batch to a slow receiver: what it has not sent yet
        is released, due at once for another relay.
        """
        self.stopping = True
        self.publisher.request_stop()
        self.wakeup.wake()

    # -- start and finish -------------------------------------------------------------------

    def _start(self) -> None:
        if not self.stopping:
            # A publisher may serve one relay after another (tests, an embedding host): the
            # stop request of the previous one must not make this one send nothing.
            self.publisher.stop_requested = False
        if not self.store.concurrent:
            self._lock_out_other_relays()
        if not orders_settings.OUTBOX_DEAD_BLOCKS_ORDER:
            # Events parked behind dead ones while the setting was on go out now.
            unparked = self.store.unpark()
            if unparked:
                logger.info("Released %d events held back by dead events", unparked)
        self.wakeup.start()
        self.keeper.start()
        threaded = self._threads_see_our_data()
        self.metrics.relay_started(self)
        self.heartbeat.start(threaded=threaded)
        if self.pipeline and threaded:
            self.strategy = Pipelined(
                self.batches,
                account=self._account,
                using=self.using,
                depth=self.publisher.max_batches_in_flight,
            )
        self._log_start()

    def _lock_out_other_relays(self) -> None:
        """Where claims cannot skip locked rows (SQLite), be the only relay (a lock file)."""
        settings_dict = connections[self.using].settings_dict
        if connections[self.using].vendor == "sqlite":
            self._lock = RelayLock.for_database(settings_dict["NAME"])
        if self._lock is not None:
            self._lock.acquire()
            # Holding the lock, this relay is the only one: leases left by a crashed
            # predecessor can be cleared now instead of waited out.
            recovered = self.store.release_all()
            if recovered:
                logger.info("Released %d events leased by a previous relay", recovered)

    def _threads_see_our_data(self) -> bool:
        """Whether connections opened by other threads see what this one sees: not inside
        a caller's transaction (a test's), not an in-memory SQLite database."""
        connection = connections[self.using]
        if connection.in_atomic_block:
            return False
        if connection.vendor == "sqlite":
            return RelayLock.for_database(connection.settings_dict["NAME"]) is not None
        return True

    def _log_start(self) -> None:
        if self.wakeup.listening:
            wake = f"LISTEN {NOTIFY_CHANNEL} + poll every {self.poll_interval}s"
        else:
            wake = f"poll every {self.poll_interval}s"
        exclusive = f", exclusive lock {self._lock.path}" if self._lock else ""
        logger.info(
            "Outbox relay started: mode=%s%s, wake-up=%s, publisher=%s, batch_size=%d, "
            "claim ahead and write behind=%s, id=%s",
            self.store.describe(),
            exclusive,
            wake,
            type(self.publisher).__qualname__,
            self.batch_size,
            "yes" if self.strategy.overlapped else "no",
            self.id,
        )

    def _finish(self) -> None:
        self.strategy.close()
        self.keeper.stop()
        self.heartbeat.stop()
        try:
            self.metrics.relay_stopped()
        except Exception:
            logger.exception("The relay's metrics hook raised")
        self.wakeup.close()
        try:
            self.publisher.close()
        except Exception:
            logger.exception("Closing the publisher failed")
        if self._lock is not None:
            self._lock.release()
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers.clear()
        totals = self.totals
        logger.info(
            "Outbox relay stopped: batches=%d claimed=%d published=%d failed=%d dead=%d",
            self.batch_count,
            totals.claimed,
            totals.published,
            totals.failed,
            totals.dead,
        )

    # -- helpers ----------------------------------------------------------------------------

    def _serial(self) -> Serial:
        return Serial(self.batches, account=self._account, before_claim=self._close_old_connections)

    def _account(self, report: BatchReport) -> None:
        self.batch_count += 1
        self.totals.add(report)

    def _close_old_connections(self) -> None:
        # django.db.close_old_connections(), minus connections inside an atomic block
        # (a caller's transaction, e.g. a test's): those are left alone, not dropped.
        for conn in connections.all(initialized_only=True):
            if not conn.in_atomic_block:
                conn.close_if_unusable_or_obsolete()

    # -- signals ----------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        """First SIGTERM/SIGINT: graceful stop. Second: exit at once."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._previous_handlers[signum] = signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        self._signals += 1
        if self._signals > 1:
            logger.warning(
                "Received %s again: exiting now; leased events return after their lease", name
            )
            os._exit(1)
        logger.warning(
            "Received %s: finishing the sends in flight, releasing the rest, then exiting "
            "(send it again to exit at once)",
            name,
        )
        self.stop()
        if self.batches.in_flight:
            # The publisher's timeout bounds one publish; if a misbehaving one overruns
            # it, give up: the leased events are claimed again once the lease runs out.
            watchdog = threading.Timer(self.publisher.timeout + SHUTDOWN_GRACE, self._give_up)
            watchdog.daemon = True
            watchdog.start()

    def _give_up(self) -> None:
        logger.error(
            "The publish in hand outlived the publisher's timeout (%ss): exiting; "
            "its events are published again after their lease",
            self.publisher.timeout,
        )
        os._exit(1)


def metrics_from_settings(port: int | None = None, address: str | None = None) -> RelayMetrics:
    """The metrics a relay reports to: Prometheus on ``port`` (or ``OUTBOX_METRICS_PORT``),
    else an instance of ``OUTBOX_METRICS``, else nothing (:class:`RelayMetrics`)."""
    if port is None:
        port = orders_settings.OUTBOX_METRICS_PORT
    custom = orders_settings.OUTBOX_METRICS
    if port is not None:
        if custom is not None:
            raise ImproperlyConfigured(
                "Both a metrics port (Prometheus) and DJANGO_ORDERS['OUTBOX_METRICS'] are "
                "set: the relay reports to one of them. Unset one."
            )
        from django_orders.outbox.prometheus import PrometheusMetrics

        return PrometheusMetrics(
            port=port,
            address=orders_settings.OUTBOX_METRICS_ADDRESS if address is None else address,
        )
    if custom is None:
        return RelayMetrics()
    metrics = custom()
    if not isinstance(metrics, RelayMetrics):
        raise ImproperlyConfigured(
            f"DJANGO_ORDERS['OUTBOX_METRICS'] must be a subclass of "
            f"django_orders.outbox.metrics.RelayMetrics, not {custom!r}."
        )
    return metrics
