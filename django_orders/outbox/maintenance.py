"""What operators do with the outbox: re-queue or discard dead events, look at the
backlog, purge what is no longer needed. Used by the admin and the management commands.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from typing import Any

from django.db import models, transaction
from django.db.models import BooleanField, Count, Exists, ExpressionWrapper, Min, OuterRef, Q
from django.utils import timezone

from django_orders.conf import orders_settings
from django_orders.models import IdempotencyKey, OutboxEvent
from django_orders.outbox.claims import DEAD, PARKED_UNTIL, PENDING, PUBLISHED, ClaimStore

logger = logging.getLogger("django_orders.outbox")


def requeue(events: models.QuerySet[OutboxEvent]) -> int:
    """Dead events become pending again, due now, with a fresh set of attempts.

    Pending and published events are left alone. ``last_error`` stays until the next
    attempt replaces it (or a publish clears it), so the history is not lost on a click.
    The later events of their orders, parked behind them, become due again too.
    """
    dead = events.filter(status=DEAD)
    with transaction.atomic(using=dead.db):
        aggregate_ids = list(dead.values_list("aggregate_id", flat=True))
        count = dead.update(
            status=PENDING,
            attempts=0,
            available_at=timezone.now(),
            lease_token=None,
            leased_until=None,
        )
        ClaimStore(dead.db).unpark(aggregate_ids)
    return count


def discard(events: models.QuerySet[OutboxEvent]) -> int:
    """Delete dead events for good, so they stop blocking the later events of their order.

    Only dead events: a pending event is still to be delivered, a published one is
    purged by retention. Consumers never see a discarded event; each one is logged.
    """
    dead = events.filter(status=DEAD)
    with transaction.atomic(using=dead.db):
        aggregate_ids = []
        for event in dead.only("id", "type", "aggregate_id", "aggregate_version"):
            # The audit trail of a deletion: which event will never be delivered.
            logger.warning(
                "Discarding dead outbox event %s (%s of %s v%d)",
                event.id,
                event.type,
                event.aggregate_id,
                event.aggregate_version,
            )
            aggregate_ids.append(event.aggregate_id)
        deleted, _ = dead.delete()
        ClaimStore(dead.db).unpark(aggregate_ids)
    return deleted


def outbox_status(using: str | None = None, now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Per tenant: ``pending``, ``held_back`` and ``dead`` counts, and ``oldest_pending``,
    the ``created_at`` of the oldest pending event (``None`` if none).

    *Held back*: pending events a relay cannot publish until a person acts on a dead
    event of their order — parked behind it (``available_at`` = :data:`PARKED_UNTIL`), or
    written after it died (with ``OUTBOX_DEAD_BLOCKS_ORDER``). They are counted apart and
    left out of ``oldest_pending``, which would otherwise grow for as long as the dead
    event stays. *Pending* is the rest: due, waiting for a retry, or deferred behind an
    earlier event of their order that is still being retried.

    One grouped query over the unfinished rows (published rows are the bulk of the table
    and say nothing about health; the ``orders_outbox_unfinished`` partial index finds the
    others), with one probe of the same index per due pending event (docs/operations.md).
    """
    now = now or timezone.now()
    events = OutboxEvent.objects.using(using)
    held = Q(available_at__gte=PARKED_UNTIL)
    if orders_settings.OUTBOX_DEAD_BLOCKS_ORDER:
        earlier_dead = events.filter(
            tenant_id=OuterRef("tenant_id"),
            aggregate_type=OuterRef("aggregate_type"),
            aggregate_id=OuterRef("aggregate_id"),
            aggregate_version__lt=OuterRef("aggregate_version"),
            status=DEAD,
        )
        # Only due events are probed (the cheap test first: PostgreSQL evaluates an AND
        # inside an expression left to right). One waiting for its retry, or deferred to
        # its failing predecessor's next attempt, is being worked on; during a receiver
        # outage that is nearly every pending event, and the status stays cheap just when
        # the backlog is large. An event held back by a dead one is parked, or was written
        # after it died and is due; one that came to wait otherwise (the setting switched
        # on meanwhile) is counted held back once its retry time has passed.
        held |= Q(Q(available_at__lte=now), Exists(earlier_dead))
    rows = (
        events.exclude(status=PUBLISHED)
        # A grouping key, so the probe runs once per row (in a FILTER of each aggregate it
        # would run once per aggregate).
        .annotate(held=ExpressionWrapper(Q(status=PENDING) & held, output_field=BooleanField()))
        .values("tenant_id", "status", "held")
        .annotate(count=Count("id"), oldest=Min("created_at"))
        .order_by()
    )
    tenants: dict[str, dict[str, Any]] = {}
    for row in rows:
        tenant = tenants.setdefault(
            row["tenant_id"],
            {
                "tenant_id": row["tenant_id"],
                "pending": 0,
                "held_back": 0,
                "dead": 0,
                "oldest_pending": None,
            },
        )
        if row["status"] == DEAD:
            tenant["dead"] += row["count"]
        elif row["held"]:
            tenant["held_back"] += row["count"]
        else:
            tenant["pending"] += row["count"]
            tenant["oldest_pending"] = row["oldest"]
    return [tenants[tenant_id] for tenant_id in sorted(tenants)]


def purge_published_events(
    *, batch_size: int, older_than: dt.datetime | None = None, using: str | None = None
) -> Iterator[int]:
    """Delete published events older than ``OUTBOX_RETENTION``, one batch at a time.

    Yields the count of each batch. Only ``status = 'published'`` rows are ever touched:
    an undelivered (pending or dead) event is never purged, however old. The batches walk
    the ``orders_outbox_published`` partial index.
    """
    cutoff = older_than or timezone.now() - orders_settings.OUTBOX_RETENTION
    events = OutboxEvent.objects.using(using)
    while True:
        ids = list(
            events.filter(status=PUBLISHED, published_at__lt=cutoff)
            .order_by("published_at")
            .values_list("id", flat=True)[:batch_size]
        )
        if not ids:
            return
        # Each batch is its own short statement: no long lock on the table, and the
        # relay keeps publishing in between.
        deleted, _ = events.filter(id__in=ids, status=PUBLISHED).delete()
        yield deleted
        if len(ids) < batch_size:
            return


def purge_idempotency_keys(
    *, batch_size: int, now: dt.datetime | None = None, using: str | None = None
) -> Iterator[int]:
    """Delete expired idempotency keys, one primary-key range at a time.

    The table has no index on ``expires_at`` on purpose: every index there leads with
    ``tenant_id`` and each one costs every create. So the purge walks the primary key in
    ranges of ``batch_size`` rows and deletes the expired keys of each range: one short
    index range scan per statement, never a scan of the whole table in one statement.
    The table only holds keys younger than about ``IDEMPOTENCY_TTL`` plus the purge
    interval, so the walk stays short. Yields the count of each batch that deleted any.
    """
    now = now or timezone.now()
    keys = IdempotencyKey.objects.using(using)
    last_pk = 0
    while True:
        pks = list(
            keys.filter(pk__gt=last_pk).order_by("pk").values_list("pk", flat=True)[:batch_size]
        )
        if not pks:
            return
        deleted, _ = keys.filter(pk__gte=pks[0], pk__lte=pks[-1], expires_at__lt=now).delete()
        last_pk = pks[-1]
        if deleted:
            yield deleted
