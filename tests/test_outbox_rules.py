"""The delivery rules of the outbox, each run on both claim stores and the same data.

``ClaimStore`` (the ORM, every database) and ``PostgresClaimStore`` (hand-written
statements, django_orders/sql.py) implement the same rules; on PostgreSQL every test here
runs on both, so a rule changed in one and not the other fails. On SQLite the ORM store
runs alone. The rules: claim order and leases, per-aggregate blocking, deferral and
parking after a failure, dead events, fencing on the lease token, re-queue and discard.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
import uuid

import pytest
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from django_orders.models import OutboxEvent
from django_orders.outbox.claims import (
    CLAIMED_FIELDS,
    PARKED_UNTIL,
    Claim,
    ClaimedEvent,
    ClaimStore,
    Failure,
)
from django_orders.outbox.maintenance import discard, requeue
from django_orders.outbox.postgres import PostgresClaimStore
from django_orders.sql import CLAIMED_COLUMNS
from django_orders.timestamps import rfc3339

pytestmark = pytest.mark.django_db

SOON = dt.timedelta(seconds=30)


# Both stores where both can run; the ORM store alone elsewhere (SQLite).
STORES = ["orm", "postgres"] if connection.vendor == "postgresql" else ["orm"]


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest) -> ClaimStore:
    if request.param == "postgres":
        return PostgresClaimStore("default")
    return ClaimStore("default")


def aggregate(
    versions: int = 3, *, tenant: str = "shop-1", type_: str = "order", key: str | None = None
) -> list[OutboxEvent]:
    """``versions`` pending events of one new aggregate, oldest first."""
    aggregate_id = key or str(uuid.uuid4())
    now = timezone.now()
    return [
        OutboxEvent.objects.create(
            tenant_id=tenant,
            aggregate_type=type_,
            aggregate_id=aggregate_id,
            aggregate_version=version,
            type=f"{type_}.v{version}",
            payload={"version": version},
            created_at=now,
            available_at=now,
        )
        for version in range(1, versions + 1)
    ]


def fresh(event: OutboxEvent) -> OutboxEvent:
    return OutboxEvent.objects.get(pk=event.pk)


def claimed(claim: Claim | None) -> list[tuple[str, int]]:
    if claim is None:
        return []
    return [(str(e.aggregate_id), e.aggregate_version) for e in claim.events]


def fail(event: OutboxEvent, *, dead: bool = False, after: dt.timedelta = SOON) -> Failure:
    """The failure of a claimed ``event`` as a relay writes it back."""
    row = OutboxEvent.objects.filter(pk=event.pk).values(*CLAIMED_COLUMNS).get()
    return Failure(
        ClaimedEvent.from_values(row), "boom", dead=dead, available_at=timezone.now() + after
    )


def run_out(*events: OutboxEvent) -> None:
    """Their leases ran out (as if the relay holding them died a lease ago)."""
    past = timezone.now() - dt.timedelta(seconds=1)
    OutboxEvent.objects.filter(pk__in=[e.pk for e in events]).update(leased_until=past)


# -- claim order and leases -------------------------------------------------------------


def test_a_claim_takes_only_the_oldest_unfinished_event_of_each_aggregate(
    store: ClaimStore,
) -> None:
    first = aggregate(3)
    second = aggregate(2)
    claim = store.claim(10)
    assert sorted(claimed(claim)) == sorted(
        [(str(first[0].aggregate_id), 1), (str(second[0].aggregate_id), 1)]
    )
    assert claim is not None
    assert all(e.attempts == 1 for e in claim.events)
    leases = OutboxEvent.objects.filter(id__in=claim.ids).values_list("lease_token", flat=True)
    assert set(leases) == {claim.token}


def test_a_claim_is_in_due_order_and_stops_at_its_limit(store: ClaimStore) -> None:
    events = [aggregate(1)[0] for _ in range(5)]
    base = timezone.now() - dt.timedelta(minutes=5)
    for offset, event in zip([3, 1, 4, 0, 2], events, strict=True):
        OutboxEvent.objects.filter(pk=event.pk).update(
            available_at=base + dt.timedelta(seconds=offset)
        )
    claim = store.claim(3)
    assert claim is not None
    # The three due first; then (published order within a batch) by created_at, id.
    assert {e.id for e in claim.events} == {str(events[i].id) for i in (3, 1, 4)}
    assert [e.id for e in claim.events] == sorted(e.id for e in claim.events)


@pytest.mark.parametrize(
    "created_at",
    [
        dt.datetime(2026, 1, 2, 3, 4, 5, 60, tzinfo=dt.UTC),
        # Whole seconds (PostgreSQL's own output drops the fraction), another zone.
        dt.datetime(2026, 7, 1, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
    ],
)
def test_a_claimed_event_is_read_alike_by_both_stores(
    store: ClaimStore, created_at: dt.datetime
) -> None:
    """What the relay builds the CloudEvent from: the id's text, ``time`` as the
    CloudEvent writes ``created_at``, the JSON decoded — the same from either store."""
    (event,) = aggregate(1)
    payload = {"naïve": "ünïcode ✓", "nested": [1, 2.5, None, True, {"a": "\u0001\n"}], "n": -3}
    extensions = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    OutboxEvent.objects.filter(pk=event.pk).update(
        payload=payload, extensions=extensions, created_at=created_at
    )
    (plain,) = aggregate(1)  # no extensions: {}
    claim = store.claim(10)
    assert claim is not None
    by_id = {e.id: e for e in claim.events}
    claimed_event = by_id[str(event.id)]
    assert claimed_event == ClaimedEvent(
        id=str(event.id),
        tenant_id=event.tenant_id,
        aggregate_type=event.aggregate_type,
        aggregate_id=event.aggregate_id,
        aggregate_version=1,
        type=event.type,
        payload=payload,
        extensions=extensions,
        time=rfc3339(created_at),
        attempts=1,
    )
    assert claimed_event.created_at == created_at
    assert by_id[str(plain.id)].extensions == {}
    assert by_id[str(plain.id)].payload == {"version": 1}


def test_a_leased_event_is_not_claimed_again_until_its_lease_runs_out(
    store: ClaimStore,
) -> None:
    (event,) = aggregate(1)
    first = store.claim(10)
    assert claimed(first) == [(str(event.aggregate_id), 1)]
    assert store.claim(10) is None
    run_out(event)
    second = store.claim(10)
    assert second is not None
    assert second.token != first.token  # type: ignore[union-attr]
    assert second.events[0].attempts == 2


def test_an_event_due_later_is_not_claimed(store: ClaimStore) -> None:
    (event,) = aggregate(1)
    OutboxEvent.objects.filter(pk=event.pk).update(available_at=timezone.now() + SOON)
    assert store.claim(10) is None
    assert claimed(store.claim(10, due_by=timezone.now() + 2 * SOON)) == [
        (str(event.aggregate_id), 1)
    ]


def test_renew_extends_the_lease_of_what_the_claim_still_holds(store: ClaimStore) -> None:
    aggregate(1)
    aggregate(1)
    claim = store.claim(10)
    assert claim is not None
    OutboxEvent.objects.update(leased_until=timezone.now() + dt.timedelta(seconds=1))
    assert store.renew(claim) == 2
    for event in OutboxEvent.objects.all():
        assert event.leased_until is not None
        assert event.leased_until > timezone.now() + dt.timedelta(seconds=25)


def test_reconfirm_names_what_the_claim_still_holds(store: ClaimStore) -> None:
    taken, kept = aggregate(1)[0], aggregate(1)[0]
    stale = store.claim(10)
    assert stale is not None
    run_out(taken)
    owner = store.claim(10)  # another relay takes the one whose lease ran out
    assert claimed(owner) == [(str(taken.aggregate_id), 1)]
    run_out(kept)
    stale.leased_at -= 3600  # by the stale relay's clock, long ago (it was paused)

    assert store.reconfirm(stale) == {str(kept.id)}
    assert fresh(kept).leased_until > timezone.now() + dt.timedelta(seconds=25)  # type: ignore[operator]
    assert stale.leased_at > time.monotonic() - 60


def test_a_partial_renewal_leaves_the_claim_looking_old(store: ClaimStore) -> None:
    """A relay must not believe its whole batch is held when a renewal found one taken."""
    first, _second = aggregate(1)[0], aggregate(1)[0]
    claim = store.claim(10)
    assert claim is not None
    claim.leased_at -= 3600
    OutboxEvent.objects.filter(pk=first.pk).update(lease_token=uuid.uuid4())
    assert store.renew(claim) == 1
    assert claim.leased_at < time.monotonic() - 3000
    OutboxEvent.objects.filter(pk=first.pk).update(lease_token=claim.token)
    assert store.renew(claim) == 2
    assert claim.leased_at > time.monotonic() - 60


def test_release_gives_back_an_unsent_claim_due_at_once(store: ClaimStore) -> None:
    (event,) = aggregate(1)
    claim = store.claim(10)
    assert claim is not None
    assert store.release(claim) == 1
    event = fresh(event)
    assert (event.status, event.attempts, event.lease_token, event.leased_until) == (
        "pending",
        0,
        None,
        None,
    )
    assert claimed(store.claim(10)) == [(str(event.aggregate_id), 1)]


# -- blocking: per-aggregate order -------------------------------------------------------


def test_publishing_an_event_unblocks_the_next_of_its_aggregate(store: ClaimStore) -> None:
    events = aggregate(3)
    claim = store.claim(10)
    assert claim is not None
    store.settle(claim.token, claim.ids, [])
    assert claimed(store.claim(10)) == [(str(events[0].aggregate_id), 2)]


def test_a_dead_event_blocks_its_aggregate_unless_told_otherwise(store: ClaimStore) -> None:
    events = aggregate(3)
    OutboxEvent.objects.filter(pk=events[0].pk).update(status="dead")
    assert store.claim(10) is None
    with override_settings(DJANGO_ORDERS={"OUTBOX_DEAD_BLOCKS_ORDER": False}):
        assert claimed(store.claim(10)) == [(str(events[0].aggregate_id), 2)]


def test_an_aggregate_is_its_tenant_type_and_id(store: ClaimStore) -> None:
    """The same id in another tenant, or another aggregate type, is another aggregate: a
    dead event of one never holds back the other."""
    key = str(uuid.uuid4())
    blocked = aggregate(2, key=key)
    other_tenant = aggregate(2, key=key, tenant="shop-2")
    other_type = aggregate(2, key=key, type_="invoice")
    OutboxEvent.objects.filter(pk=blocked[0].pk).update(status="dead")
    # Their version 1 went out long ago: version 2 is next, behind nothing of their own.
    OutboxEvent.objects.filter(pk__in=[other_tenant[0].pk, other_type[0].pk]).update(
        status="published", published_at=timezone.now()
    )
    claim = store.claim(10)
    assert claim is not None
    assert {e.id for e in claim.events} == {str(other_tenant[1].id), str(other_type[1].id)}


# -- the outcome of a batch -------------------------------------------------------------


def test_published_events_are_marked_and_their_lease_cleared(store: ClaimStore) -> None:
    (event,) = aggregate(1)
    claim = store.claim(10)
    assert claim is not None
    settled = store.settle(claim.token, claim.ids, [])
    assert (settled.published, settled.retried, settled.dead) == (1, 0, 0)
    event = fresh(event)
    assert event.status == "published"
    assert event.published_at is not None
    assert (event.lease_token, event.leased_until, event.last_error) == (None, None, "")


def test_a_failure_is_retried_later_and_defers_its_aggregate(store: ClaimStore) -> None:
    events = aggregate(3)
    other = aggregate(1)[0]
    claim = store.claim(10)
    assert claim is not None
    failure = fail(events[0])
    settled = store.settle(claim.token, [other.id], [failure])
    assert (settled.published, settled.retried, settled.dead) == (1, 1, 0)

    first, *later = (fresh(e) for e in events)
    assert (first.status, first.last_error, first.lease_token) == ("pending", "boom", None)
    assert first.available_at == failure.available_at
    # Its later events cannot go first anyway: kept out of every claim until then.
    assert all(e.available_at == failure.available_at for e in later)
    assert fresh(other).status == "published"


def test_a_deferral_never_brings_an_event_forward(store: ClaimStore) -> None:
    events = aggregate(2)
    far = timezone.now() + dt.timedelta(hours=1)
    OutboxEvent.objects.filter(pk=events[1].pk).update(available_at=far)
    claim = store.claim(10)
    assert claim is not None
    store.settle(claim.token, [], [fail(events[0])])
    assert fresh(events[1]).available_at == far


@pytest.mark.parametrize("blocks", [True, False], ids=["dead-blocks", "dead-does-not-block"])
def test_a_dead_event_parks_its_aggregate(store: ClaimStore, blocks: bool) -> None:
    events = aggregate(3)
    claim = store.claim(10)
    assert claim is not None
    with override_settings(DJANGO_ORDERS={"OUTBOX_DEAD_BLOCKS_ORDER": blocks}):
        settled = store.settle(claim.token, [], [fail(events[0], dead=True)])
    assert (settled.retried, settled.dead) == (0, 1)
    first, *later = (fresh(e) for e in events)
    assert (first.status, first.lease_token) == ("dead", None)
    if blocks:
        assert all(e.available_at == PARKED_UNTIL for e in later)
    else:
        assert all(e.available_at < PARKED_UNTIL for e in later)


def test_requeue_revives_a_dead_event_and_unparks_its_aggregate(store: ClaimStore) -> None:
    events = aggregate(3)
    claim = store.claim(10)
    assert claim is not None
    store.settle(claim.token, [], [fail(events[0], dead=True)])

    assert requeue(OutboxEvent.objects.filter(pk__in=[e.pk for e in events])) == 1
    first, *later = (fresh(e) for e in events)
    assert (first.status, first.attempts) == ("pending", 0)
    assert all(e.available_at <= timezone.now() for e in later)
    assert claimed(store.claim(10)) == [(str(events[0].aggregate_id), 1)]


def test_discard_deletes_a_dead_event_and_unparks_its_aggregate(store: ClaimStore) -> None:
    events = aggregate(3)
    claim = store.claim(10)
    assert claim is not None
    store.settle(claim.token, [], [fail(events[0], dead=True)])

    assert discard(OutboxEvent.objects.all()) == 1  # dead events only
    assert not OutboxEvent.objects.filter(pk=events[0].pk).exists()
    assert claimed(store.claim(10)) == [(str(events[0].aggregate_id), 2)]


# -- fencing: a relay whose lease passed on changes nothing -----------------------------


def test_a_stale_relay_cannot_overwrite_the_new_owners_outcome(store: ClaimStore) -> None:
    (event,) = aggregate(1)
    stale = store.claim(10)
    assert stale is not None
    run_out(event)
    owner = store.claim(10)
    assert owner is not None

    assert store.settle(owner.token, [event.id], []).published == 1
    late = store.settle(stale.token, [], [fail(event, dead=True)])
    assert (late.published, late.retried, late.dead) == (0, 0, 0)
    assert fresh(event).status == "published"


def test_a_stale_relay_can_neither_publish_renew_nor_release(store: ClaimStore) -> None:
    (event,) = aggregate(1)
    stale = store.claim(10)
    assert stale is not None
    run_out(event)
    owner = store.claim(10)
    assert owner is not None

    assert store.settle(stale.token, [event.id], []).published == 0
    assert store.renew(stale) == 0
    assert store.release(stale) == 0
    assert store.reconfirm(stale) == set()
    event = fresh(event)
    assert (event.status, event.lease_token, event.attempts) == ("pending", owner.token, 2)


def test_the_claimed_columns_are_the_claimed_events_fields() -> None:
    assert tuple(f.name for f in dataclasses.fields(ClaimedEvent)) == CLAIMED_FIELDS
    assert (
        tuple("time" if name == "created_at" else name for name in CLAIMED_COLUMNS)
        == CLAIMED_FIELDS
    )
