"""Claiming outbox events under a lease, and writing the outcome back fenced on it.

A claim is one short transaction: pick the due events, stamp them with a fresh
``lease_token``, ``leased_until = now + OUTBOX_LEASE`` and ``attempts + 1``, commit. The
publish happens after that commit, outside any transaction: a relay never holds a row lock
or an open transaction while it talks to a broker. Other relays skip leased rows until
the lease runs out, so a relay that dies holding a claim delays its events by at most one
lease.

Every write after the claim (renewing the lease, recording the outcome, releasing it)
matches ``lease_token``: a relay whose lease ran out and whose events were claimed again
by another relay updates nothing — it cannot overwrite the new owner's result.

Only the oldest unfinished event of an aggregate is claimable (no earlier event of the
same aggregate — tenant, type and id — is pending, or dead with
``OUTBOX_DEAD_BLOCKS_ORDER``), so a batch holds at most one event per aggregate and the
events of one aggregate go out in version order however many relays run.

Two implementations of the same rules:

- :class:`ClaimStore` (here): the portable ORM path (SQLite, and ``SKIP LOCKED`` where the
  backend has it). Leases use the relay's clock.
- :class:`~django_orders.outbox.postgres.PostgresClaimStore`: the claim and a batch's
  failures each in one statement (:func:`django_orders.sql.outbox_statements`); leases use
  the database clock. tests/test_outbox_rules.py runs both on the same data, rule by rule.

:class:`ClaimStore` has more methods than a class here usually has, on purpose: each is
one step of the lease (claim, renew, reconfirm, settle, release, unpark) or one rule
(``defer_followers``), the interface the relay calls and the PostgreSQL store overrides
step by step.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import time
import uuid
from collections.abc import Sequence
from typing import Any

from django.db import connections, models, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from django_orders.conf import orders_settings
from django_orders.models import OutboxEvent
from django_orders.sql import CLAIMED_COLUMNS
from django_orders.timestamps import rfc3339

PENDING = OutboxEvent.Status.PENDING
PUBLISHED = OutboxEvent.Status.PUBLISHED
DEAD = OutboxEvent.Status.DEAD

#: ``last_error`` is for people: keep the first few kilobytes of a long error.
MAX_ERROR_LENGTH = 2000

#: ``available_at`` of the events held back by a dead event of their order: "not before
#: that event is re-queued or discarded" (which make them due again).
PARKED_UNTIL = dt.datetime(9999, 1, 1, tzinfo=dt.UTC)


class OutboxQuerySet(models.QuerySet[OutboxEvent]):
    """Queries of the relay. ``OutboxQuerySet(OutboxEvent, using=alias)``."""

    def due(self, now: dt.datetime, due_by: dt.datetime | None = None) -> OutboxQuerySet:
        """Pending, available, and not leased by a live claim."""
        return self.filter(
            Q(leased_until__isnull=True) | Q(leased_until__lt=now),
            status=PENDING,
            available_at__lte=due_by if due_by is not None else now,
        )

    def unblocked(self) -> OutboxQuerySet:
        """Events with no earlier unfinished event of their aggregate (per-order order)."""
        blocking = [PENDING, DEAD] if orders_settings.OUTBOX_DEAD_BLOCKS_ORDER else [PENDING]
        earlier = OutboxEvent.objects.using(self.db).filter(
            tenant_id=OuterRef("tenant_id"),
            aggregate_type=OuterRef("aggregate_type"),
            aggregate_id=OuterRef("aggregate_id"),
            aggregate_version__lt=OuterRef("aggregate_version"),
            status__in=blocking,
        )
        return self.filter(~Exists(earlier))

    def held(self, token: uuid.UUID, ids: Sequence[str | uuid.UUID]) -> OutboxQuerySet:
        """Those of ``ids`` still held by the claim ``token``: the fence of every write
        after the claim.

        By primary key, so each row is one index probe whatever the statistics say: a
        ``status = 'pending'`` condition would let the planner walk the whole pending
        partial index when stale statistics call it empty. A lease token is cleared by
        every write that changes the status, so a row still holding one is pending.
        """
        return self.filter(id__in=ids, lease_token=token)


@dataclasses.dataclass(slots=True)
class ClaimedEvent:
    """What the relay needs of a claimed event (:data:`CLAIMED_FIELDS`).

    A plain row, not a model instance: building 100 ``OutboxEvent`` instances (and
    converting columns the relay never reads) cost about as much as the claim statement.
    ``id`` and ``created_at`` are kept as the CloudEvent writes them — the UUID's text and
    ``time`` (RFC 3339, UTC): the PostgreSQL claim returns them so, and the relay needs the
    datetime only for a metrics hook that wants the publish latency (:attr:`created_at`,
    parsed then).
    """

    #: The event's UUID as text (the CloudEvent's ``id``; what the write-back sends).
    id: str
    tenant_id: str
    aggregate_type: str
    aggregate_id: str
    aggregate_version: int
    type: str
    payload: Any
    extensions: dict[str, Any]
    time: str
    attempts: int

    @property
    def created_at(self) -> dt.datetime:
        """When the event was recorded (``time`` as a datetime)."""
        return dt.datetime.fromisoformat(self.time)

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> ClaimedEvent:
        """The claimed event of a row read as ``.values(*CLAIMED_COLUMNS)``."""
        values = dict(values)
        values["id"] = str(values["id"])
        values["time"] = rfc3339(values.pop("created_at"))
        return cls(**values)


#: :class:`ClaimedEvent`'s fields (a test keeps them so): the columns a claim reads
#: (:data:`~django_orders.sql.CLAIMED_COLUMNS`), ``created_at`` read as ``time``.
CLAIMED_FIELDS = tuple("time" if name == "created_at" else name for name in CLAIMED_COLUMNS)


@dataclasses.dataclass
class Claim:
    """A batch of events leased by one relay; ``events`` in publishing order.

    ``leased_at`` is the relay's ``time.monotonic()`` just before the statement that last
    set the lease (the claim, or a renewal): the lease cannot have run out before
    ``leased_at + OUTBOX_LEASE`` by the relay's clock, whatever the database's clock says,
    because the database set it later. A relay that was paused (``SIGSTOP``, a VM stall)
    sees that time pass and checks with the database before it sends.
    """

    token: uuid.UUID
    events: list[ClaimedEvent]
    leased_at: float = dataclasses.field(default_factory=time.monotonic)

    @property
    def ids(self) -> list[str]:
        return [event.id for event in self.events]

    def renewed(self, count: int, leased_at: float) -> None:
        """Note a renewal that extended ``count`` leases. Only a renewal of every event
        moves ``leased_at``: one that found an event taken by another relay leaves the
        claim looking old, so the relay checks it with the database before sending."""
        if count == len(self.events):
            self.leased_at = leased_at


@dataclasses.dataclass
class Failure:
    """A failed publish as it will be written back."""

    event: ClaimedEvent
    error: str
    dead: bool
    available_at: dt.datetime


@dataclasses.dataclass
class Settled:
    """What a write-back changed (fewer rows than sent means the lease was lost)."""

    published: int = 0
    retried: int = 0
    dead: int = 0


class ClaimStore:
    """Claims through the ORM: portable, the relay's clock, ``SKIP LOCKED`` if available.

    One method per thing a relay (or an operator) does to the outbox — claim; renew,
    reconfirm and release a lease; settle a batch (mark published, mark failed, defer the
    followers of a failure); unpark; clear leases — hence more methods than a class here
    usually has; :class:`~django_orders.outbox.postgres.PostgresClaimStore` overrides the
    hot ones with single statements.
    """

    def __init__(self, using: str) -> None:
        self.using = using

    @property
    def connection(self) -> BaseDatabaseWrapper:
        # Looked up on each use: connections are per thread, and the relay renews leases
        # from a thread of its own.
        return connections[self.using]

    @property
    def concurrent(self) -> bool:
        """Whether several relays may claim at once (the backend has ``SKIP LOCKED``)."""
        return bool(self.connection.features.has_select_for_update_skip_locked)

    def describe(self) -> str:
        if self.concurrent:
            return f"concurrent ({self.connection.vendor}, SELECT ... FOR UPDATE SKIP LOCKED)"
        return f"single relay ({self.connection.vendor} has no SKIP LOCKED)"

    def events(self) -> OutboxQuerySet:
        return OutboxQuerySet(OutboxEvent, using=self.using)

    def claim(self, limit: int, *, due_by: dt.datetime | None = None) -> Claim | None:
        """Lease up to ``limit`` due events; ``None`` when nothing is due."""
        leased_at = time.monotonic()
        now = timezone.now()
        due = self.events().due(now, due_by).unblocked().order_by("available_at", "id")
        # A read outside any transaction first: on SQLite an idle relay then never takes
        # the write lock (an IMMEDIATE transaction would, once per poll).
        if not due.exists():
            return None
        token = uuid.uuid4()
        lease = orders_settings.OUTBOX_LEASE
        # Short transaction: select and stamp the rows, nothing else; the publish runs
        # after the commit, so no lock is held while a broker is slow.
        with transaction.atomic(using=self.using):
            if self.concurrent:
                due = due.select_for_update(skip_locked=True)
            ids = list(due.values_list("id", flat=True)[:limit])
            if not ids:
                return None
            self.events().filter(id__in=ids).update(
                lease_token=token, leased_until=now + lease, attempts=F("attempts") + 1
            )
        rows = self.events().held(token, ids).order_by("created_at", "id")
        batch = [ClaimedEvent.from_values(row) for row in rows.values(*CLAIMED_COLUMNS)]
        return Claim(token, batch, leased_at) if batch else None

    def renew(self, claim: Claim) -> int:
        """Extend the lease of the events this claim still holds; returns how many."""
        leased_at = time.monotonic()
        leased_until = timezone.now() + orders_settings.OUTBOX_LEASE
        renewed = self.events().held(claim.token, claim.ids).update(leased_until=leased_until)
        claim.renewed(renewed, leased_at)
        return renewed

    def reconfirm(self, claim: Claim) -> set[str]:
        """Renew the lease and return the ids (as text) this claim still holds.

        A relay calls it before it sends a batch whose lease may have run out: an event
        another relay has claimed since (a new token) is no longer this relay's to send.
        """
        leased_at = time.monotonic()
        leased_until = timezone.now() + orders_settings.OUTBOX_LEASE
        with transaction.atomic(using=self.using):
            held = set(self.events().held(claim.token, claim.ids).values_list("id", flat=True))
            self.events().filter(id__in=held).update(leased_until=leased_until)
        claim.leased_at = leased_at
        return {str(pk) for pk in held}

    def settle(
        self,
        token: uuid.UUID,
        published: Sequence[str | uuid.UUID],
        failures: Sequence[Failure],
    ) -> Settled:
        """Write the outcome of a batch back, fenced on ``token``."""
        settled = Settled()
        now = timezone.now()
        # Short transaction: the outcome of one batch lands together, nothing else inside.
        # (A batch that all went out is one statement: no BEGIN/COMMIT round trips.)
        atomic = transaction.atomic(using=self.using) if failures else contextlib.nullcontext()
        with atomic:
            if published:
                settled.published = self.mark_published(token, published, now)
            if failures:
                settled.retried, settled.dead = self.mark_failed(token, failures)
        return settled

    def mark_failed(self, token: uuid.UUID, failures: Sequence[Failure]) -> tuple[int, int]:
        """Record the failures still held by ``token`` (pending with backoff, or dead) and
        defer the later events of their orders; returns (retried, dead)."""
        retried = dead = 0
        for failure in failures:
            changed = (
                self.events()
                .held(token, [failure.event.id])
                .update(
                    status=DEAD if failure.dead else PENDING,
                    available_at=failure.available_at,
                    last_error=failure.error[:MAX_ERROR_LENGTH],
                    lease_token=None,
                    leased_until=None,
                )
            )
            if failure.dead:
                dead += changed
            else:
                retried += changed
            if changed:
                self.defer_followers(failure)
        return retried, dead

    def mark_published(
        self, token: uuid.UUID, published: Sequence[str | uuid.UUID], now: dt.datetime
    ) -> int:
        """Mark the events of ``published`` still held by ``token`` as published."""
        return (
            self.events()
            .held(token, published)
            .update(
                status=PUBLISHED,
                published_at=now,
                lease_token=None,
                leased_until=None,
                last_error="",
            )
        )

    def defer_followers(self, failure: Failure) -> None:
        """Keep the later events of a failed event's order out of the claim scan.

        They cannot be claimed before it anyway (per-order order). Left due, every claim
        would step over them — during a receiver outage, every pending event of every
        order — and the claim would slow down just when the backlog grows. Deferred to the
        failed event's next attempt, or parked while a dead event blocks them.
        """
        if failure.dead:
            if not orders_settings.OUTBOX_DEAD_BLOCKS_ORDER:
                return
            until = PARKED_UNTIL
        else:
            until = failure.available_at
        self.followers(failure.event, until).update(available_at=until)

    def followers(self, event: ClaimedEvent | OutboxEvent, before: dt.datetime) -> OutboxQuerySet:
        """The pending later events of ``event``'s aggregate due before ``before``."""
        # "Neither published nor dead" rather than "pending": the same rows, but only the
        # per-aggregate orders_outbox_unfinished index matches it; with stale statistics
        # status = 'pending' could send the planner through the whole pending index.
        return (
            self.events()
            .filter(
                tenant_id=event.tenant_id,
                aggregate_type=event.aggregate_type,
                aggregate_id=event.aggregate_id,
                aggregate_version__gt=event.aggregate_version,
                available_at__lt=before,
            )
            .exclude(status=PUBLISHED)
            .exclude(status=DEAD)
        )

    def unpark(self, aggregate_ids: Sequence[str] | None = None) -> int:
        """Make events parked behind dead events due now (all, or of these aggregates)."""
        parked = self.events().filter(status=PENDING, available_at__gte=PARKED_UNTIL)
        if aggregate_ids is not None:
            parked = parked.filter(aggregate_id__in=aggregate_ids)
        return parked.update(available_at=timezone.now())

    def release(self, claim: Claim) -> int:
        """Give back a claim that was never published (shutdown): due now, attempt undone."""
        return (
            self.events()
            .held(claim.token, claim.ids)
            .update(lease_token=None, leased_until=None, attempts=F("attempts") - 1)
        )

    def release_all(self) -> int:
        """Clear every lease. Only for a relay that knows it is the only one (SQLite)."""
        return (
            self.events()
            .filter(status=PENDING, lease_token__isnull=False)
            .update(lease_token=None, leased_until=None)
        )
