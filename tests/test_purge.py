"""docs/operations.md: ``orders_purge`` deletes expired idempotency keys and published events past
retention, in batches, and never an undelivered event."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings
from django.utils import timezone

from django_orders.management.commands.orders_purge import paced
from django_orders.models import IdempotencyKey, OutboxEvent
from django_orders.outbox.maintenance import purge_idempotency_keys, purge_published_events
from tests.outbox_rows import bulk_events

pytestmark = pytest.mark.django_db


def keys(expired: int, live: int) -> None:
    now = timezone.now()
    rows = [
        IdempotencyKey(
            tenant_id="shop-1",
            key=f"k-{i}",
            method="POST",
            path="/orders",
            fingerprint="0" * 64,
            state="completed",
            response_status=201,
            expires_at=now + dt.timedelta(minutes=-1 if i < expired else 30),
        )
        for i in range(expired + live)
    ]
    IdempotencyKey.objects.bulk_create(rows)


def purge(*args: str) -> str:
    out = StringIO()
    call_command("orders_purge", *args, stdout=out)
    return out.getvalue()


def test_expired_idempotency_keys_are_deleted_live_ones_kept() -> None:
    keys(expired=7, live=3)
    output = purge("--batch-size", "3")
    assert "Deleted 7 expired idempotency key(s)" in output
    assert sorted(IdempotencyKey.objects.values_list("key", flat=True)) == ["k-7", "k-8", "k-9"]


def test_idempotency_keys_go_in_batches() -> None:
    keys(expired=7, live=3)
    assert list(purge_idempotency_keys(batch_size=3)) == [3, 3, 1]


def test_a_key_expired_late_in_the_table_is_found() -> None:
    keys(expired=0, live=5)
    last = IdempotencyKey.objects.order_by("-pk").first()
    assert last is not None
    IdempotencyKey.objects.filter(pk=last.pk).update(expires_at=timezone.now())
    assert sum(purge_idempotency_keys(batch_size=2)) == 1
    assert IdempotencyKey.objects.count() == 4


@override_settings(DJANGO_ORDERS={"OUTBOX_RETENTION": 3600})
def test_published_events_past_retention_are_deleted_nothing_undelivered() -> None:
    events = bulk_events(4, versions=2)  # 8 events, all pending
    long_ago = timezone.now() - dt.timedelta(days=30)
    old_published = [e.id for e in events[:5]]
    OutboxEvent.objects.filter(id__in=old_published).update(
        status="published", published_at=long_ago
    )
    OutboxEvent.objects.filter(id=events[5].id).update(
        status="published", published_at=timezone.now() - dt.timedelta(minutes=5)
    )
    # Undelivered events, however old, stay.
    OutboxEvent.objects.filter(id=events[6].id).update(status="dead", created_at=long_ago)
    OutboxEvent.objects.filter(id=events[7].id).update(created_at=long_ago, available_at=long_ago)

    output = purge("--batch-size", "2")

    assert "and 5 published event(s) older than 1:00:00" in output
    assert set(OutboxEvent.objects.values_list("id", flat=True)) == {
        events[5].id,
        events[6].id,
        events[7].id,
    }


def test_published_events_go_in_batches() -> None:
    events = bulk_events(5, versions=1)
    OutboxEvent.objects.filter(id__in=[e.id for e in events]).update(
        status="published", published_at=timezone.now() - dt.timedelta(days=8)
    )
    assert list(purge_published_events(batch_size=2)) == [2, 2, 1]


def test_nothing_to_purge() -> None:
    assert purge() == (
        "Deleted 0 expired idempotency key(s) and 0 published event(s) older than "
        "7 days, 0:00:00.\n"
    )


def test_a_pause_between_batches_still_purges_everything() -> None:
    events = bulk_events(5, versions=1)
    OutboxEvent.objects.filter(id__in=[e.id for e in events]).update(
        status="published", published_at=timezone.now() - dt.timedelta(days=8)
    )
    started = time.monotonic()
    output = purge("--batch-size", "2", "--pause", "0.05")
    assert "and 5 published event(s)" in output
    assert not OutboxEvent.objects.exists()
    assert time.monotonic() - started >= 0.1  # slept after the first two batches at least


def test_by_default_the_purge_rests_as_long_as_each_batch_took() -> None:
    def batches() -> Iterator[int]:
        for _ in range(3):
            time.sleep(0.05)  # a batch's DELETE taking 50 ms
            yield 10

    started = time.monotonic()
    assert sum(paced(batches(), None)) == 30
    assert time.monotonic() - started >= 0.3  # 3 batches of 50 ms, each followed by a rest as long
    started = time.monotonic()
    assert sum(paced(batches(), 0)) == 30
    assert time.monotonic() - started < 0.3  # --pause 0: full speed


def test_the_default_pause_still_purges_everything() -> None:
    events = bulk_events(5, versions=1)
    OutboxEvent.objects.filter(id__in=[e.id for e in events]).update(
        status="published", published_at=timezone.now() - dt.timedelta(days=8)
    )
    assert "and 5 published event(s)" in purge("--batch-size", "2", "--pause", "auto")
    assert not OutboxEvent.objects.exists()


@pytest.mark.parametrize("pause", ["-1", "nan", "soon", "inf", "1e400"])
def test_a_pause_is_a_non_negative_number(pause: str) -> None:
    with pytest.raises(CommandError):
        purge("--pause", pause)
