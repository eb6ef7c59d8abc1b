"""One batch's way through the relay: claimed, sent, its results awaited, written back.

:class:`Batches` holds the steps; a strategy (:mod:`~django_orders.outbox.strategies`)
runs them, in sequence or overlapped, each on whichever thread it chooses:

1. :meth:`Batches.claim` — lease up to ``batch_size`` due events; the lease keeper renews
   the lease from now until the batch is written back;
2. :meth:`Batches.send` — make sure the lease still holds (:meth:`Batches.still_held`),
   build the CloudEvents and hand them to the publisher;
3. :meth:`Batches.wait` — the publisher's results, one per claimed event;
4. :meth:`Batches.write_back` — each event published, retried later (backoff) or dead,
   fenced on the lease; the lease keeper lets the batch go.

A batch never sent (the relay is stopping) is given back instead: :meth:`Batches.give_back`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import Any

from django.db import DatabaseError
from django.utils import timezone

from django_orders.conf import orders_settings
from django_orders.outbox.backoff import retry_delay
from django_orders.outbox.claims import Claim, ClaimedEvent, ClaimStore, Failure
from django_orders.outbox.cloudevents import to_cloudevent
from django_orders.outbox.lease import LeaseKeeper
from django_orders.outbox.metrics import BatchReport, RelayMetrics, measures_latency
from django_orders.outbox.tracing import PublishSpan, start_publish_span
from django_orders.publishers.base import InFlight, NotSent, Publisher, PublishError

logger = logging.getLogger("django_orders.relay")

#: A batch whose lease was set (claimed or renewed) longer ago than this share of
#: ``OUTBOX_LEASE``, by the relay's clock, is checked with the database before it is sent.
#: The lease keeper renews every third of the lease, so only a relay that was paused
#: (SIGSTOP, a VM stall) or could not renew gets there.
RECHECK_LEASE_AFTER = 0.5

#: ``events_failed`` reasons of the failures the relay makes up itself (the publishers'
#: own are on :class:`~django_orders.publishers.base.PublishError`).
ABANDONED = "abandoned"  # claimed too often without an outcome: parked
ERROR = "error"  # the publisher raised instead of answering

Result = PublishError | None


@dataclasses.dataclass
class Batch:
    """A claimed batch on its way: sent (or not), its results known or awaited."""

    claim: Claim
    #: ``time.monotonic()`` when the relay started on it (the batch's logged duration).
    started: float
    #: One result per claimed event, in the claim's order; those of the events handed to
    #: the publisher are filled in by :meth:`Batches.wait`.
    results: list[Result]
    #: Where in the claim the events handed to the publisher are.
    positions: list[int] = dataclasses.field(default_factory=list)
    #: The publisher's handle while the batch is in flight.
    handle: InFlight | None = None
    #: Events dropped before sending: another relay claimed them after the lease ran out.
    lost: int = 0
    #: When the publisher's results came in (``timezone.now()``): the events' acknowledgement.
    acknowledged_at: dt.datetime | None = None
    #: The batch's publish span (OpenTelemetry installed), ended when its results are in.
    span: PublishSpan | None = None


class Batches:
    """The steps of a batch (module docstring), for one relay and its publisher."""

    def __init__(
        self,
        publisher: Publisher,
        store: ClaimStore,
        keeper: LeaseKeeper,
        *,
        batch_size: int,
        stopping: Callable[[], bool],
        metrics: RelayMetrics | None = None,
    ) -> None:
        self.publisher = publisher
        self.publisher_name = type(publisher).__qualname__
        self.store = store
        self.keeper = keeper
        self.batch_size = batch_size
        self.stopping = stopping
        self.metrics = metrics or RelayMetrics()
        # The events' creation times (parsed per event) only for a hook that reads them.
        self._wants_latency = measures_latency(self.metrics)
        #: Batches handed to the publisher whose results are not in yet. A stopping relay
        #: waits for them (at most the publisher's timeout); read from a signal handler.
        self.in_flight = 0

    # -- 1. claim ---------------------------------------------------------------------------

    def claim(self, due_by: dt.datetime | None) -> Claim | None:
        """Lease the next due events (``None`` when nothing is due) and keep them leased."""
        claim = self.store.claim(self.batch_size, due_by=due_by)
        if claim is not None:
            # Renewed from now on: it may wait behind a slow publish of the batch before.
            self.keeper.hold(claim)
        return claim

    def give_back(self, claim: Claim) -> int:
        """Release a claim that was never sent: due at once, its attempt undone."""
        try:
            released = self.store.release(claim)
        finally:
            self.keeper.release(claim)
        logger.info("Outbox relay: released %d claimed events it had not started", released)
        return released

    # -- 2. send ----------------------------------------------------------------------------

    def send(self, claim: Claim, started: float) -> Batch:
        """Build the batch's CloudEvents and hand them to the publisher."""
        batch = Batch(claim, started, results=[], lost=self.still_held(claim))
        batch.results = [None] * len(claim.events)
        documents: list[dict[str, Any]] = []
        max_attempts = int(orders_settings.OUTBOX_MAX_ATTEMPTS)
        for position, event in enumerate(claim.events):
            if event.attempts > max_attempts:
                # Claimed more often than it may be tried, yet no outcome was ever written:
                # each relay holding it died (or lost its lease) — perhaps because of this
                # very event. Park it instead of risking that again.
                batch.results[position] = PublishError(
                    f"claimed {event.attempts} times without an outcome: the relays holding "
                    "it died or lost their lease while publishing it",
                    reason=ABANDONED,
                )
                continue
            try:
                documents.append(to_cloudevent(event))
            except Exception as exc:
                # An event that cannot even be built will not build on a retry either.
                logger.exception("Outbox event %s cannot be turned into a CloudEvent", event.id)
                batch.results[position] = PublishError(
                    f"{type(exc).__name__}: {exc}", permanent=True
                )
            else:
                batch.positions.append(position)
        if not documents:
            return batch
        batch.span = start_publish_span(self.publisher_name, documents)
        self.in_flight += 1  # from here on a stopping relay waits for it (within the timeout)
        try:
            batch.handle = self.publisher.start_batch(documents)
        except Exception as exc:
            batch.handle = InFlight(self._publisher_raised(exc, len(documents)))
        return batch

    def still_held(self, claim: Claim) -> int:
        """Make sure this relay still holds ``claim``'s events before it sends them; drop
        those it no longer holds. Returns how many were dropped.

        A relay paused past its lease (SIGSTOP, a stalled VM) may find that another relay
        has claimed its events since — and published them, and the later events of their
        orders. Sending them now would deliver an order's earlier event after its later
        one. A claim renewed recently by the relay's own clock is certainly still held;
        an older one is renewed in the database, which says which events it still holds.
        A pause after this check, while the batch is being sent, is the window no relay
        can close (docs/operations.md, "Running several relays").
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

    # -- 3. wait ----------------------------------------------------------------------------

    def wait(self, batch: Batch) -> list[Result]:
        """The batch's results once the publisher has them: one per claimed event."""
        results = batch.results
        if batch.handle is None:
            return results
        count = len(batch.positions)
        try:
            published = list(batch.handle.wait())
            if len(published) != count:
                raise RuntimeError(
                    f"the publisher returned {len(published)} results for {count} events"
                )
        except Exception as exc:
            published = self._publisher_raised(exc, count)
        finally:
            batch.handle = None
            self.in_flight -= 1
            batch.acknowledged_at = timezone.now()
        failed = 0
        if published.count(None) != count:  # all published: results are None already
            for position, result in zip(batch.positions, published, strict=True):
                if result is not None and not isinstance(result, PublishError):
                    result = PublishError(f"{type(result).__name__}: {result}", reason=ERROR)
                results[position] = result
                failed += result is not None and not isinstance(result, NotSent)
        if batch.span is not None:
            batch.span.end(sent=count, failed=failed)
        return results

    def _publisher_raised(self, exc: Exception, count: int) -> list[Result]:
        # A publisher bug or an unexpected driver error: the whole batch failed and is
        # retried with backoff like any transient failure.
        logger.exception("Publisher %s raised", self.publisher_name, exc_info=exc)
        return [PublishError(f"{type(exc).__name__}: {exc}", reason=ERROR)] * count

    # -- 4. write back ----------------------------------------------------------------------

    def write_back(self, batch: Batch, results: list[Result]) -> BatchReport:
        """Record each event's outcome, stop renewing the lease, log the batch's line."""
        try:
            report, reasons, delivered = self._settle(batch.claim, results)
        finally:
            self.keeper.release(batch.claim)
        report.claimed += batch.lost
        report.lost += batch.lost
        seconds = time.monotonic() - batch.started
        duration_ms = seconds * 1000
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
        self._report(batch, delivered, report, reasons, seconds)
        return report

    def _report(
        self,
        batch: Batch,
        delivered: list[ClaimedEvent],
        report: BatchReport,
        reasons: dict[str, int],
        seconds: float,
    ) -> None:
        """Tell the metrics hook what the batch did; a failing hook is logged, never fatal
        (the batch's outcome is written already)."""
        metrics = self.metrics
        try:
            if self._wants_latency and batch.acknowledged_at is not None and report.published:
                metrics.events_published(
                    [event.created_at for event in delivered], batch.acknowledged_at
                )
            for reason, count in reasons.items():
                metrics.events_failed(reason, count)
            metrics.batch_finished(report, seconds)
        except Exception:
            logger.exception("The relay's metrics hook raised")

    def _settle(
        self, claim: Claim, results: list[Result]
    ) -> tuple[BatchReport, dict[str, int], list[ClaimedEvent]]:
        """Write each event's outcome back, reading the results once: the batch's report,
        its failures by reason, and the events the publisher delivered."""
        now = timezone.now()
        max_attempts = int(orders_settings.OUTBOX_MAX_ATTEMPTS)
        cap = orders_settings.OUTBOX_BACKOFF_MAX.total_seconds()
        delivered: list[ClaimedEvent] = []
        failures: list[Failure] = []
        unsent: list[ClaimedEvent] = []
        reasons: dict[str, int] = {}
        if results.count(None) == len(results):  # the common case: all published
            delivered = claim.events
        else:
            for event, result in zip(claim.events, results, strict=True):
                if result is None:
                    delivered.append(event)
                elif isinstance(result, NotSent) and self.stopping():
                    # Only while stopping: a NotSent at any other time (a publisher bug)
                    # is a failure with backoff, or a release would make the event due
                    # again at once.
                    unsent.append(event)
                else:
                    failures.append(_failure(event, result, now, max_attempts, cap))
                    reasons[result.reason] = reasons.get(result.reason, 0) + 1
        settled = self.store.settle(claim.token, [event.id for event in delivered], failures)
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
        return report, reasons, delivered


def _failure(
    event: ClaimedEvent, error: PublishError, now: dt.datetime, max_attempts: int, cap: float
) -> Failure:
    """How a failed publish is written back: dead at once (permanent, or out of attempts),
    or pending again after a backoff delay."""
    dead = error.permanent or event.attempts >= max_attempts
    delay = 0.0 if dead else retry_delay(event.attempts, cap=cap, retry_after=error.retry_after)
    text = str(error) or type(error).__name__
    if dead:
        logger.warning(
            "Outbox event %s (%s of %s v%d) is dead after %d attempts: %s",
            event.id,
            event.type,
            event.aggregate_id,
            event.aggregate_version,
            event.attempts,
            text,
        )
    return Failure(
        event=event,
        error=f"attempt {event.attempts}{' (permanent)' if error.permanent else ''}: {text}",
        dead=dead,
        available_at=now + dt.timedelta(seconds=delay),
    )
