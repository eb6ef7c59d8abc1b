"""``manage.py orders_purge``: delete expired idempotency keys and published events past
``OUTBOX_RETENTION`` (docs/operations.md), in batches, and the heartbeat rows of relays gone
for an hour. Never an undelivered (pending or dead) event. Run it from cron or a
scheduler, e.g. every few minutes."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from django_orders import rls
from django_orders.conf import orders_settings
from django_orders.management.commands.orders_outbox_relay import positive_int
from django_orders.management.commands.orders_outbox_status import seconds
from django_orders.outbox.heartbeat import purge_stale_heartbeats
from django_orders.outbox.maintenance import purge_idempotency_keys, purge_published_events


def pause_seconds(value: str) -> float | None:
    """``--pause``: ``auto`` (``None``) or a number of seconds, not negative, finite."""
    if value == "auto":
        return None
    number = seconds(value)
    if number == math.inf:  # time.sleep() refuses it
        raise ValueError(value)
    return number


def paced(batches: Iterator[int], pause: float | None) -> Iterator[int]:
    """The batches' counts, sleeping ``pause`` seconds after each, or — ``None``, the
    default — as long as the batch took, so the purge keeps a database connection busy
    half the time at most (the generator holds no transaction or lock between batches:
    each one is its own statement)."""
    started = time.monotonic()
    for count in batches:
        yield count
        rest = time.monotonic() - started if pause is None else pause
        if rest:
            time.sleep(rest)
        started = time.monotonic()


class Command(BaseCommand):
    help = (
        "Delete expired idempotency keys and published outbox events older than "
        "OUTBOX_RETENTION, in batches. Pending and dead events are never deleted."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--batch-size",
            type=positive_int,
            default=1000,
            metavar="N",
            help="Rows deleted per statement [1000].",
        )

        parser.add_argument(
            "--pause",
            type=pause_seconds,
            default=None,
            metavar="SECONDS",
            help=(
                "Sleep between batches, to leave a busy database room for the API: "
                "'auto' sleeps as long as the last batch took, 0 not at all [auto]."
            ),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if rls.enabled():
            rls.allow_cross_tenant()  # every tenant's keys and events (row-level security)
        batch_size, pause = options["batch_size"], options["pause"]
        keys = sum(paced(purge_idempotency_keys(batch_size=batch_size), pause))
        events = sum(paced(purge_published_events(batch_size=batch_size), pause))
        purge_stale_heartbeats()
        self.stdout.write(
            f"Deleted {keys} expired idempotency key(s) and {events} published event(s) "
            f"older than {orders_settings.OUTBOX_RETENTION}."
        )
