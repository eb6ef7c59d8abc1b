"""What operators do with the outbox: re-queue or discard dead events, look at the
backlog, purge what is no longer needed. Used by the admin and the management commands.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from typing import Any

from django.db import models, transaction
from django.db.models import Count, Min, Q
from django.utils import timezone

from django_orders.conf import orders_settings
from django_orders.models import IdempotencyKey, OutboxEvent
from django_orders.outbox.claims import DEAD, PENDING, PUBLISHED, ClaimStore

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


def outbox_status(using: str | None = None) -> list[dict[str, Any]]:
    """Per tenant: pending and dead counts, and the oldest pending event's ``created_at``.

    One grouped query over the unfinished rows (published rows are not counted: they are
    the bulk of the table and say nothing about health).
    """
    rows = (
        OutboxEvent.objects.using(using)
        .exclude(status=PUBLISHED)
        .values("tenant_id")
        .annotate(
            pending=Count("id", filter=Q(status=PENDING)),
            dead=Count("id", filter=Q(status=DEAD)),
            oldest_pending=Min("created_at", filter=Q(status=PENDING)),
        )
        .order_by("tenant_id")
    )
    return [dict(row) for row in rows]


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
