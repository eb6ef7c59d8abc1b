"""The outbox relay: claims pending events, publishes them, records the outcome.

One loop, run by ``manage.py orders_outbox_relay`` (a thin command over :class:`Relay`)::

    claim a batch (short transaction, lease)  →  publish it (no transaction)
        →  write the outcome back (short transaction, fenced on the lease)  →  repeat;
    when nothing is due: wait for NOTIFY, a signal or the next poll.

On PostgreSQL the three steps overlap: the next batch is claimed on a thread of its own
(:class:`~django_orders.outbox.pipeline.Claimer`) and the outcome of the batch before is
written back on another (:class:`~django_orders.outbox.pipeline.Settler`) while the
current batch is published, so a fast broker does not sit idle while the relay talks
to the database.

Guarantees (docs/guide/publishers.md): at-least-once — an event is marked published only after the
publisher confirmed it, and a relay killed at any instant leaves at worst a lease that
runs out; per-order order — only the oldest unfinished event of an order is claimable;
no duplicates among healthy relays — claims skip leased rows and a lease is renewed for
as long as its batch is being published. The claim mechanics are in
:mod:`django_orders.outbox.claims`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import signal
import threading
import time
import uuid
from collections import deque
from concurrent.futures import Future
from types import FrameType
from typing import Any

from django.db import DatabaseError, connections, router
from django.utils import timezone

from django_orders.conf import orders_settings
from django_orders.models import OutboxEvent
from django_orders.outbox.backoff import retry_delay
from django_orders.outbox.claims import (
    Claim,
    ClaimedEvent,
    ClaimStore,
    Failure,
    PostgresClaimStore,
    claim_store_for,
)
from django_orders.outbox.cloudevents import to_cloudevent
from django_orders.outbox.exclusive import RelayAlreadyRunning, RelayLock
from django_orders.outbox.pipeline import Claimer, LeaseKeeper, Settler
from django_orders.outbox.recording import NOTIFY_CHANNEL
from django_orders.outbox.wakeup import Wakeup
from django_orders.publishers.base import InFlight, NotSent, Publisher, PublishError

__all__ = ["BatchReport", "LeaseKeeper", "Relay", "RelayAlreadyRunning"]

logger = logging.getLogger("django_orders.relay")

#: Extra seconds past the publisher's timeout a stopping relay waits for the sends in flight.
SHUTDOWN_GRACE = 2.0

#: A batch whose lease was set (claimed or renewed) longer ago than this share of
#: ``OUTBOX_LEASE``, by the relay's clock, is checked with the database before it is sent.
#: The lease keeper renews every third of the lease, so only a relay that was paused
#: (SIGSTOP, a VM stall) or could not renew gets there.
RECHECK_LEASE_AFTER = 0.5


@dataclasses.dataclass
class BatchReport:
    """What one batch did; also the running totals of a relay (:attr:`Relay.totals`)."""

    claimed: int = 0
    published: int = 0
    failed: int = 0
    dead: int = 0
    lost: int = 0  # outcomes not written: the lease had passed to another relay
    released: int = 0  # not sent because the relay was stopping: given back, due at once

    def add(self, other: BatchReport) -> None:
        for field in dataclasses.fields(self):
            setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))


@dataclasses.dataclass
class _Sending:
    """A claimed batch handed to the publisher: the results known before sending (events
    that could not be built), where the sent ones go, and the publisher's handle."""

    claim: Claim
    started: float
    results: list[PublishError | None]
    positions: list[int]  # of the events handed to the publisher, in the claim
    in_flight: InFlight | None = None
    lost: int = 0  # events not sent: another relay took them after the lease ran out


class Relay:
    """Publishes outbox events with ``publisher`` until stopped (or, with ``once``, drained).

    ``listen`` uses ``LISTEN/NOTIFY`` on PostgreSQL (ignored elsewhere). ``pipeline``
    claims the next batch on a thread of its own while one is published (PostgreSQL,
    outside a caller's transaction: the claim thread has its own connection). Signal handling
    is opt-in (:meth:`install_signal_handlers`, main thread only) so a relay can also run
    in a thread and be stopped with :meth:`stop`.
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
    ) -> None:
        self.publisher = publisher
        self.batch_size = int(batch_size or orders_settings.OUTBOX_BATCH_SIZE)
        self.poll_interval = float(
            orders_settings.OUTBOX_POLL_INTERVAL if poll_interval is None else poll_interval
        )
        self.using = using or router.db_for_write(OutboxEvent)
        self.store: ClaimStore = claim_store_for(self.using)
        self.listen = listen and connections[self.using].vendor == "postgresql"
        self.wakeup = Wakeup(self.using if self.listen else None)
        self.pipeline = pipeline and isinstance(self.store, PostgresClaimStore)
        self.totals = BatchReport()
        self.batches = 0
        self.stopping = False
        self._signals = 0
        self._sending = 0  # batches handed to the publisher, results not in yet
        self._lock: RelayLock | None = None
        self._keeper: LeaseKeeper | None = None
        self._claimer: Claimer | None = None
        self._settler: Settler | None = None
        self._previous_handlers: dict[int, Any] = {}

    # -- running -------------------------------------------------------------------------

    def run(self, *, once: bool = False) -> bool:
        """Run until :meth:`stop` (or, with ``once``, until nothing due is left).

        Returns whether every publish attempted succeeded. ``once`` takes the events due
        when it starts (and those they unblock), never one written or retried later, so
        it ends even while writes keep coming.
        """
        try:
            self._start()
            if once:
                self._drain(due_by=timezone.now())
            else:
                self._serve()
        finally:
            self._finish()
        return self.totals.failed == 0

    def stop(self) -> None:
        """Stop claiming; finish the sends in flight and give back the rest of the batch.

        Thread- and signal-safe. The publisher is told through ``request_stop()`` (if it
        has one), so a stop does not wait for a whole batch to a slow receiver: what it
        has not sent yet is released, due at once for another relay.
        """
        self.stopping = True
        request_stop = getattr(self.publisher, "request_stop", None)
        if request_stop is not None:
            request_stop()
        self.wakeup.wake()

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
            "Received %s: finishing the sends in flight, releasing the rest, then exiting (send it "
            "again to exit at once)",
            name,
        )
        self.stop()
        if self._sending:
            # The publisher's timeout bounds one publish; if a misbehaving one overruns
            # it, give up: the leased events are claimed again once the lease runs out.
            watchdog = threading.Timer(self._publish_timeout + SHUTDOWN_GRACE, self._give_up)
            watchdog.daemon = True
            watchdog.start()

    @property
    def _publish_timeout(self) -> float:
        return float(getattr(self.publisher, "timeout", Publisher.timeout))

    def _give_up(self) -> None:
        logger.error(
            "The publish in hand outlived the publisher's timeout (%ss): exiting; "
            "its events are published again after their lease",
            self._publish_timeout,
        )
        os._exit(1)

    def _start(self) -> None:
        if isinstance(self.publisher, Publisher) and not self.stopping:
            # A publisher may serve one relay after another (tests, an embedding host): the
            # stop request of the previous one must not make this one send nothing.
            self.publisher.stop_requested = False
        if not self.store.concurrent:
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
        if not orders_settings.OUTBOX_DEAD_BLOCKS_ORDER:
            # Events parked behind dead ones while the setting was on go out now.
            unparked = self.store.unpark()
            if unparked:
                logger.info("Released %d events held back by dead events", unparked)
        self.wakeup.start()
        self._keeper = LeaseKeeper(self.store, orders_settings.OUTBOX_LEASE.total_seconds() / 3)
        self._keeper.start()
        if self.pipeline and not connections[self.using].in_atomic_block:
            # Not inside a caller's transaction (a test's): the threads' own connections
            # would not see what that transaction wrote.
            self._claimer = Claimer(self.store, self._keeper)
            self._settler = Settler(self.using)
        if self.wakeup.listening:
            wake = f"LISTEN {NOTIFY_CHANNEL} + poll every {self.poll_interval}s"
        else:
            wake = f"poll every {self.poll_interval}s"
        exclusive = f", exclusive lock {self._lock.path}" if self._lock else ""
        logger.info(
            "Outbox relay started: mode=%s%s, wake-up=%s, publisher=%s, batch_size=%d, "
            "claim ahead and write behind=%s",
            self.store.describe(),
            exclusive,
            wake,
            type(self.publisher).__qualname__,
            self.batch_size,
            "yes" if self._claimer is not None else "no",
        )

    def _finish(self) -> None:
        if self._claimer is not None:
            self._claimer.close()
        if self._settler is not None:
            self._settler.close()
        if self._keeper is not None:
            self._keeper.stop()
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
            self.batches,
            totals.claimed,
            totals.published,
            totals.failed,
            totals.dead,
        )

    def _serve(self) -> None:
        while not self.stopping:
            self._close_old_connections()
            try:
                if self._claimer is not None:
                    # Returns only once a claim found nothing due: wait then.
                    self._process_pipelined()
                    report = None
                else:
                    report = self.process_batch()
            except DatabaseError:
                logger.exception(
                    "Outbox relay: database error, retrying in %ss", self.poll_interval
                )
                report = None
            if report is None and not self.stopping:
                logger.debug("Nothing due, waiting up to %ss", self.poll_interval)
                woken_by = self.wakeup.wait(self.poll_interval)
                logger.debug("Woken by %s", woken_by)

    def _drain(self, *, due_by: Any) -> None:
        if self._claimer is not None:
            self._process_pipelined(due_by=due_by)
            return
        while not self.stopping:
            self._close_old_connections()
            if self.process_batch(due_by=due_by) is None:
                return

    def _close_old_connections(self) -> None:
        # django.db.close_old_connections(), minus connections inside an atomic block
        # (a caller's transaction, e.g. a test's): those are left alone, not dropped.
        for conn in connections.all(initialized_only=True):
            if not conn.in_atomic_block:
                conn.close_if_unusable_or_obsolete()

    # -- one batch -----------------------------------------------------------------------

    def process_batch(self, *, due_by: Any = None) -> BatchReport | None:
        """Claim, publish and settle one batch; ``None`` when nothing was due."""
        started = time.monotonic()
        claim = self.store.claim(self.batch_size, due_by=due_by)
        if claim is None:
            return None
        if self._keeper is not None:
            self._keeper.hold(claim)
        if self.stopping:
            self._release_unstarted(claim)
            return None
        return self._process(claim, started)

    def _process_pipelined(self, *, due_by: Any = None) -> None:
        """Process batches, each claimed on the claim thread while the one before it is
        published, and written back on the write-back thread while the one after it is
        published, until a claim finds nothing due (or a stop).

        A claim that comes back empty while a batch was in flight is made once more after
        that batch is written back: the events it unblocked (the next of each order) are
        due now, and ``--once`` must take them in the same run.
        """
        try:
            self._pipeline(due_by)
        except BaseException:
            # Already failing (or stopping at once): the write-back in progress still
            # lands, and an error of its own is only logged.
            try:
                self._collect_write_back()
            except Exception:
                logger.exception("Outbox relay: writing a batch's outcome back failed")
            raise
        self._collect_write_back()

    def _collect_write_back(self) -> None:
        """Wait for the write-back in progress and count its batch."""
        if self._settler is not None:
            self._account(self._settler.drain())

    def _pipeline(self, due_by: Any) -> None:
        assert self._claimer is not None
        # Batches handed to the publisher whose results are not in yet, oldest first.
        depth = max(1, int(getattr(self.publisher, "max_batches_in_flight", 1)))
        sending: deque[_Sending] = deque()
        future: Future[Claim | None] | None = self._claimer.submit(self.batch_size, due_by)
        claimed_behind_a_batch = False
        try:
            while not self.stopping:
                assert future is not None
                started = time.monotonic()
                pending, future = future, None  # an error here leaves nothing to give back
                claim = pending.result()
                if claim is None:
                    self._finish_sending(sending)
                    if not claimed_behind_a_batch:
                        return
                    self._collect_write_back()
                    future = self._claimer.submit(self.batch_size, due_by)
                    claimed_behind_a_batch = False
                    continue
                if self.stopping:
                    self._release_unstarted(claim)
                    return
                future = self._claimer.submit(self.batch_size, due_by)
                claimed_behind_a_batch = True
                sending.append(self._start_publish(claim, started))
                while len(sending) >= depth:
                    self._write_behind(sending.popleft())
        finally:
            try:
                # Also when stopping: the sends in flight finish and their outcome is kept.
                self._finish_sending(sending)
            finally:
                if future is not None:
                    # Stopping, or a write-back failed: give back the batch claimed ahead.
                    self._give_back(future)

    def _finish_sending(self, sending: deque[_Sending]) -> None:
        """Wait for every batch in flight, oldest first, and hand each to the write-back."""
        error: Exception | None = None
        while sending:
            try:
                self._write_behind(sending.popleft())
            except Exception as exc:  # an earlier write-back failed: the others still land
                error = error or exc
        if error is not None:
            raise error

    def _write_behind(self, sending: _Sending) -> None:
        """Wait for a batch's results and write them back on the write-back thread."""
        assert self._settler is not None
        results = self._finish_publish(sending)
        self._account(self._settler.submit(lambda: self._write_back(sending, results)))

    def _give_back(self, future: Future[Claim | None]) -> None:
        try:
            claim = future.result()
            if claim is not None:
                self._release_unstarted(claim)
        except Exception:
            # Its lease runs out instead; nothing of it was sent.
            logger.exception("Outbox relay: releasing the batch claimed ahead failed")

    def _release_unstarted(self, claim: Claim) -> None:
        """Give back a claim never published: due at once, attempt undone."""
        try:
            released = self.store.release(claim)
        finally:
            if self._keeper is not None:
                self._keeper.release(claim)
        logger.info("Outbox relay: released %d claimed events it had not started", released)

    def _process(self, claim: Claim, started: float) -> BatchReport:
        """Publish and settle a claimed batch (held by the lease keeper until settled)."""
        try:
            sending = self._start_publish(claim, started)
            results = self._finish_publish(sending)
        except BaseException:
            if self._keeper is not None:
                self._keeper.release(claim)
            raise
        report = self._write_back(sending, results)
        self._account(report)
        return report

    def _account(self, report: BatchReport | None) -> None:
        if report is not None:
            self.batches += 1
            self.totals.add(report)

    def _write_back(self, sending: _Sending, results: list[PublishError | None]) -> BatchReport:
        """Settle a published batch, stop renewing its lease, log its line."""
        claim = sending.claim
        try:
            report = self._settle(claim, results)
        finally:
            if self._keeper is not None:
                self._keeper.release(claim)
        report.claimed += sending.lost
        report.lost += sending.lost
        duration_ms = (time.monotonic() - sending.started) * 1000
        logger.info(
            "outbox batch claimed=%d published=%d failed=%d dead=%d lost=%d duration_ms=%.1f",
            report.claimed,
            report.published,
            report.failed,
            report.dead,
            report.lost,
            duration_ms,
            extra={
                "outbox_batch": {**dataclasses.asdict(report), "duration_ms": round(duration_ms, 1)}
            },
        )
        return report

    def _start_publish(self, claim: Claim, started: float) -> _Sending:
        """Build the batch's CloudEvents and hand them to the publisher."""
        lost = self._drop_lost_leases(claim)
        results: list[PublishError | None] = [None] * len(claim.events)
        documents: list[dict[str, Any]] = []
        positions: list[int] = []
        max_attempts = int(orders_settings.OUTBOX_MAX_ATTEMPTS)
        for position, event in enumerate(claim.events):
            if event.attempts > max_attempts:
                # Claimed more often than it may be tried, yet no outcome was ever written:
                # each relay holding it died (or lost its lease) — perhaps because of this
                # very event. Park it instead of risking that again.
                results[position] = PublishError(
                    f"claimed {event.attempts} times without an outcome: the relays holding "
                    "it died or lost their lease while publishing it"
                )
                continue
            try:
                documents.append(to_cloudevent(event))
            except Exception as exc:
                # An event that cannot even be built will not build on a retry either.
                logger.exception("Outbox event %s cannot be turned into a CloudEvent", event.id)
                results[position] = PublishError(f"{type(exc).__name__}: {exc}", permanent=True)
            else:
                positions.append(position)
        sending = _Sending(claim, started, results, positions, lost=lost)
        if not documents:
            return sending
        self._sending += 1  # from here on a signal waits for it (within the timeout)
        try:
            sending.in_flight = self.publisher.start_batch(documents)
        except Exception as exc:
            sending.in_flight = InFlight(self._publisher_raised(exc, len(documents)))
        return sending

    def _drop_lost_leases(self, claim: Claim) -> int:
        """Make sure this relay still holds ``claim``'s events before it sends them; drop
        those it no longer holds. Returns how many were dropped.

        A relay paused past its lease (SIGSTOP, a stalled VM) may find that another relay
        has claimed its events since — and published them, and the later events of their
        orders. Sending them now would deliver an order's earlier event after its later
        one. A claim renewed recently by the relay's own clock is certainly still held;
        an older one is renewed in the database, which says which events it still holds.
        A pause after this check, while the batch is being sent, is the window no relay
        can close (docs/operations.md, "Several relays").
        """
        lease = orders_settings.OUTBOX_LEASE.total_seconds()
        if time.monotonic() - claim.leased_at < lease * RECHECK_LEASE_AFTER:
            return 0
        try:
            held = self.store.reconfirm(claim)
        except DatabaseError:
            # Unknown whether it is still ours: send nothing; the lease runs out.
            logger.exception("Outbox relay: cannot check a batch's lease; not sending it")
            unsure, claim.events = len(claim.events), []
            return unsure
        kept = [event for event in claim.events if event.id in held]
        lost = len(claim.events) - len(kept)
        if lost:
            logger.warning(
                "Outbox relay: the lease of %d claimed events ran out and they were claimed "
                "again elsewhere; not sending them",
                lost,
            )
            claim.events = kept  # a new list: the lease keeper may be reading the old one
        return lost

    def _finish_publish(self, sending: _Sending) -> list[PublishError | None]:
        """Wait for a batch's results: one per claimed event, in the claim's order."""
        results = sending.results
        if sending.in_flight is None:
            return results
        count = len(sending.positions)
        try:
            published = list(sending.in_flight.wait())
            if len(published) != count:
                raise RuntimeError(
                    f"the publisher returned {len(published)} results for {count} events"
                )
        except Exception as exc:
            published = self._publisher_raised(exc, count)
        finally:
            sending.in_flight = None
            self._sending -= 1
        for position, result in zip(sending.positions, published, strict=True):
            if result is not None and not isinstance(result, PublishError):
                result = PublishError(f"{type(result).__name__}: {result}")
            results[position] = result
        return results

    def _publisher_raised(self, exc: Exception, count: int) -> list[PublishError | None]:
        # A publisher bug or an unexpected driver error: the whole batch failed and is
        # retried with backoff like any transient failure.
        logger.exception("Publisher %s raised", type(self.publisher).__qualname__, exc_info=exc)
        return [PublishError(f"{type(exc).__name__}: {exc}")] * count

    def _settle(self, claim: Claim, results: list[PublishError | None]) -> BatchReport:
        now = timezone.now()
        max_attempts = int(orders_settings.OUTBOX_MAX_ATTEMPTS)
        cap = orders_settings.OUTBOX_BACKOFF_MAX.total_seconds()
        published: list[uuid.UUID] = []
        failures: list[Failure] = []
        unsent: list[ClaimedEvent] = []
        for event, result in zip(claim.events, results, strict=True):
            if result is None:
                published.append(event.id)
                continue
            if isinstance(result, NotSent) and self.stopping:
                # Only while stopping: a NotSent at any other time (a publisher bug) is a
                # failure with backoff, or a release would make the event due again at once.
                unsent.append(event)
                continue
            dead = result.permanent or event.attempts >= max_attempts
            delay = (
                0.0
                if dead
                else retry_delay(event.attempts, cap=cap, retry_after=result.retry_after)
            )
            error = str(result) or type(result).__name__
            failures.append(
                Failure(
                    event=event,
                    error=f"attempt {event.attempts}{' (permanent)' if result.permanent else ''}: "
                    f"{error}",
                    dead=dead,
                    available_at=now + dt.timedelta(seconds=delay),
                )
            )
            if dead:
                logger.warning(
                    "Outbox event %s (%s of %s v%d) is dead after %d attempts: %s",
                    event.id,
                    event.type,
                    event.aggregate_id,
                    event.aggregate_version,
                    event.attempts,
                    error,
                )
        settled = self.store.settle(claim.token, published, failures)
        report = BatchReport(
            claimed=len(claim.events),
            published=settled.published,
            failed=len(failures),
            dead=settled.dead,
        )
        if unsent:
            # Never tried: due at once for the next relay, attempt undone, no error noted.
            report.released = self.store.release(Claim(claim.token, unsent))
            logger.info("Outbox relay stopping: released %d unsent events", report.released)
        report.lost = report.claimed - (
            settled.published + settled.retried + settled.dead + report.released
        )
        if report.lost:
            logger.warning(
                "Outbox relay: %d outcomes not written, their lease had passed to another relay",
                report.lost,
            )
        return report
