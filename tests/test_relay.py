"""docs/operations.md: the relay claims, publishes to a real HTTP receiver, and settles outcomes.

These tests run the relay in the test process (``--once`` through ``call_command``, or the
:class:`Relay` class) against a real HTTP server on loopback; the multi-process tests
(SIGKILL, SIGTERM, several relays) are in ``test_relay_processes.py``.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable

import pytest
from django.core.management import CommandError
from django.db import connection, connections, transaction
from django.test import override_settings
from django.utils import timezone

from django_orders import services
from django_orders.models import Order, OutboxEvent
from django_orders.outbox.backoff import retry_delay
from django_orders.outbox.claims import (
    PARKED_UNTIL,
    Failure,
    claim_store_for,
)
from django_orders.outbox.exclusive import RelayLock
from django_orders.outbox.maintenance import discard, requeue
from django_orders.outbox.postgres import PostgresClaimStore
from django_orders.outbox.relay import Relay
from django_orders.publishers import InFlight, NotSent
from tests.outbox_rows import bulk_events
from tests.receiver import Receiver, versions_by_order
from tests.relay_publishers import FailingPublisher, RecordingPublisher
from tests.relay_runs import relay_once

pytestmark = pytest.mark.django_db

PUBLISHER = "tests.relay_publishers.ReceiverPublisher"


def run_once(receiver: Receiver, *args: str) -> int:
    """``manage.py orders_outbox_relay --once`` in process; returns the exit status."""
    return relay_once(PUBLISHER, *args, url=receiver.url)


def order_with_three_events(tenant: str = "shop-1") -> Order:
    """An order created, confirmed and closed: order.created, .confirmed, .closed."""
    order = services.create_order(tenant)
    with transaction.atomic():
        order = services.confirm_order(
            services.get_order_for_update(tenant, order.id), total_cents=1000
        )
    with transaction.atomic():
        order = services.close_order(services.get_order_for_update(tenant, order.id))
    return order


def events_of(order: Order) -> list[OutboxEvent]:
    return list(OutboxEvent.objects.filter(aggregate_id=order.id).order_by("aggregate_version"))


def make_due(order: Order) -> None:
    """Skip the backoff wait (the tests check available_at, then fast-forward)."""
    OutboxEvent.objects.filter(aggregate_id=order.id).update(available_at=timezone.now())


# -- --once ----------------------------------------------------------------------------


def test_once_publishes_created_confirmed_closed_in_one_run(receiver: Receiver) -> None:
    order = order_with_three_events()

    assert run_once(receiver) == 0

    assert [e["type"] for e in receiver.received] == [
        "order.created",
        "order.confirmed",
        "order.closed",
    ]
    assert [e["data"]["version"] for e in receiver.received] == [1, 2, 3]
    assert {e["subject"] for e in receiver.received} == {str(order.id)}
    for event in events_of(order):
        assert event.status == OutboxEvent.Status.PUBLISHED
        assert event.published_at is not None
        assert event.attempts == 1
        assert event.lease_token is None
        assert event.leased_until is None
        assert event.last_error == ""


def test_once_publishes_every_order_and_tenant(receiver: Receiver) -> None:
    orders = [order_with_three_events(tenant) for tenant in ("shop-1", "shop-2", "shop-1")]

    assert run_once(receiver, "--batch-size", "2") == 0

    assert receiver.count() == 9
    assert receiver.versions_by_order() == {str(o.id): [1, 2, 3] for o in orders}
    assert not OutboxEvent.objects.exclude(status=OutboxEvent.Status.PUBLISHED).exists()


def test_once_with_nothing_due_exits_0(receiver: Receiver) -> None:
    assert run_once(receiver) == 0
    assert receiver.count() == 0


def test_the_cloudevent_on_the_wire(receiver: Receiver) -> None:
    order = services.create_order("shop-7", metadata={"ref": "A-1"})
    assert run_once(receiver) == 0
    (event,) = receiver.received
    stored = events_of(order)[0]
    assert event["specversion"] == "1.0"
    assert event["id"] == str(stored.id)
    assert event["type"] == "order.created"
    assert event["subject"] == str(order.id)
    assert event["tenantid"] == "shop-7"
    assert event["data"] == order.to_dict()


def test_failure_exits_1_and_backs_off(receiver: Receiver) -> None:
    order = order_with_three_events()
    receiver.status = 503
    before = timezone.now()

    assert run_once(receiver) == 1

    first, confirmed, closed = events_of(order)
    assert first.status == OutboxEvent.Status.PENDING
    assert first.attempts == 1
    assert first.available_at > before  # the backoff is visible
    assert first.available_at <= timezone.now() + dt.timedelta(seconds=1.1)  # first retry ≤ 1 s
    assert "HTTP 503" in first.last_error
    assert first.lease_token is None
    # The later events of the order were not even tried: order is kept.
    assert (confirmed.attempts, closed.attempts) == (0, 0)
    assert receiver.refused == 1

    receiver.status = 200
    make_due(order)
    assert run_once(receiver) == 0
    assert [e["data"]["version"] for e in receiver.received] == [1, 2, 3]
    assert events_of(order)[0].attempts == 2


def test_once_does_not_retry_what_failed_in_the_same_run(receiver: Receiver) -> None:
    services.create_order("shop-1")
    receiver.status = 503
    assert run_once(receiver) == 1
    assert receiver.refused == 1


def test_retry_after_is_honoured_within_the_cap(receiver: Receiver) -> None:
    order = services.create_order("shop-1")
    receiver.status, receiver.retry_after = 429, "30"
    assert run_once(receiver) == 1
    event = events_of(order)[0]
    assert event.available_at >= timezone.now() + dt.timedelta(seconds=28)

    receiver.retry_after = "3600"
    make_due(order)
    with override_settings(DJANGO_ORDERS={"OUTBOX_BACKOFF_MAX": 60}):
        assert run_once(receiver) == 1
    event = events_of(order)[0]
    assert event.available_at <= timezone.now() + dt.timedelta(seconds=60)
    assert event.status == OutboxEvent.Status.PENDING


def test_permanent_error_parks_the_event_as_dead_at_once(receiver: Receiver) -> None:
    order = order_with_three_events()
    receiver.status = 400

    assert run_once(receiver) == 1

    first, *later = events_of(order)
    assert first.status == OutboxEvent.Status.DEAD
    assert first.attempts == 1
    assert "HTTP 400" in first.last_error
    assert "permanent" in first.last_error
    assert all(e.status == OutboxEvent.Status.PENDING and e.attempts == 0 for e in later)


@override_settings(DJANGO_ORDERS={"OUTBOX_MAX_ATTEMPTS": 3})
def test_max_attempts_parks_the_event_as_dead(receiver: Receiver) -> None:
    order = services.create_order("shop-1")
    receiver.status = 500
    for attempt in (1, 2, 3):
        make_due(order)
        assert run_once(receiver) == 1
        event = events_of(order)[0]
        assert event.attempts == attempt
        expected = OutboxEvent.Status.DEAD if attempt == 3 else OutboxEvent.Status.PENDING
        assert event.status == expected
    assert "attempt 3" in event.last_error

    make_due(order)
    receiver.status = 200
    assert run_once(receiver) == 0
    assert receiver.count() == 0  # dead stays dead until someone re-queues it


def test_dead_event_blocks_its_order_until_requeued(receiver: Receiver) -> None:
    order = order_with_three_events()
    other = order_with_three_events()
    OutboxEvent.objects.filter(aggregate_id=order.id, aggregate_version=1).update(
        status=OutboxEvent.Status.DEAD, attempts=10, last_error="gone"
    )

    assert run_once(receiver) == 0
    # The other order is not held up; this one's later events wait behind the dead one.
    assert receiver.versions_by_order() == {str(other.id): [1, 2, 3]}
    assert [e.status for e in events_of(order)] == ["dead", "pending", "pending"]

    assert requeue(OutboxEvent.objects.filter(aggregate_id=order.id)) == 1
    first = events_of(order)[0]
    assert (first.status, first.attempts) == ("pending", 0)

    assert run_once(receiver) == 0
    assert receiver.versions_by_order()[str(order.id)] == [1, 2, 3]


def test_discarding_a_dead_event_unblocks_its_order(receiver: Receiver) -> None:
    order = order_with_three_events()
    OutboxEvent.objects.filter(aggregate_id=order.id, aggregate_version=1).update(
        status=OutboxEvent.Status.DEAD
    )
    # discard() touches dead events only.
    assert discard(OutboxEvent.objects.filter(aggregate_id=order.id)) == 1
    assert run_once(receiver) == 0
    assert receiver.versions_by_order() == {str(order.id): [2, 3]}


@override_settings(DJANGO_ORDERS={"OUTBOX_DEAD_BLOCKS_ORDER": False})
def test_dead_event_need_not_block_its_order(receiver: Receiver) -> None:
    order = order_with_three_events()
    OutboxEvent.objects.filter(aggregate_id=order.id, aggregate_version=1).update(
        status=OutboxEvent.Status.DEAD
    )
    assert run_once(receiver) == 0
    assert receiver.versions_by_order() == {str(order.id): [2, 3]}


def test_a_failure_defers_the_later_events_of_its_order(receiver: Receiver) -> None:
    order = order_with_three_events()
    receiver.status = 503
    assert run_once(receiver) == 1
    first, *later = events_of(order)
    # They could not go before it anyway; deferred, they stay out of every claim's way.
    assert all(e.available_at == first.available_at for e in later)
    assert all(e.attempts == 0 for e in later)


def test_a_dead_event_parks_its_order_and_requeue_releases_it(receiver: Receiver) -> None:
    order = order_with_three_events()
    receiver.status = 410
    assert run_once(receiver) == 1
    first, *later = events_of(order)
    assert first.status == OutboxEvent.Status.DEAD
    assert all(e.available_at == PARKED_UNTIL for e in later)

    receiver.status = 200
    assert run_once(receiver) == 0
    assert receiver.count() == 0
    assert requeue(OutboxEvent.objects.filter(status="dead")) == 1
    assert run_once(receiver) == 0
    assert receiver.versions_by_order() == {str(order.id): [1, 2, 3]}


def test_discard_releases_a_parked_order(receiver: Receiver) -> None:
    order = order_with_three_events()
    receiver.status = 400
    assert run_once(receiver) == 1
    receiver.status = 200
    assert discard(OutboxEvent.objects.all()) == 1
    assert run_once(receiver) == 0
    assert receiver.versions_by_order() == {str(order.id): [2, 3]}


def test_turning_dead_blocking_off_releases_parked_events(receiver: Receiver) -> None:
    order = order_with_three_events()
    receiver.status = 400
    assert run_once(receiver) == 1
    receiver.status = 200
    with override_settings(DJANGO_ORDERS={"OUTBOX_DEAD_BLOCKS_ORDER": False}):
        assert run_once(receiver) == 0
    assert receiver.versions_by_order() == {str(order.id): [2, 3]}
    assert events_of(order)[0].status == OutboxEvent.Status.DEAD


def test_a_raising_publisher_counts_as_a_transient_failure() -> None:
    class Broken(RecordingPublisher):
        def publish_batch(self, events):  # type: ignore[no-untyped-def]
            raise ConnectionResetError("broker went away")

    order = services.create_order("shop-1")
    relay = Relay(Broken(), listen=False)
    assert relay.run(once=True) is False
    event = events_of(order)[0]
    assert event.status == "pending"
    assert event.attempts == 1
    assert "ConnectionResetError: broker went away" in event.last_error


def test_a_publisher_answering_the_wrong_number_of_results_fails_the_batch() -> None:
    class Short(RecordingPublisher):
        def publish_batch(self, events):  # type: ignore[no-untyped-def]
            return []

    order = services.create_order("shop-1")
    assert Relay(Short(), listen=False).run(once=True) is False
    event = events_of(order)[0]
    assert event.status == "pending"
    assert "the publisher returned 0 results for 1 events" in event.last_error


def test_an_event_that_cannot_be_built_is_dead_the_others_go_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broken = services.create_order("shop-1")
    fine = services.create_order("shop-1")
    from django_orders.outbox import batches as batches_module

    def to_cloudevent(event: OutboxEvent) -> dict[str, object]:
        if event.aggregate_id == broken.id:
            raise ValueError("unbuildable")
        return {"id": str(event.id)}

    monkeypatch.setattr(batches_module, "to_cloudevent", to_cloudevent)
    publisher = RecordingPublisher()
    assert Relay(publisher, listen=False).run(once=True) is False
    assert publisher.events == [{"id": str(events_of(fine)[0].id)}]
    dead = events_of(broken)[0]
    assert dead.status == OutboxEvent.Status.DEAD
    assert "ValueError: unbuildable" in dead.last_error


@override_settings(DJANGO_ORDERS={"OUTBOX_MAX_ATTEMPTS": 2})
def test_an_event_whose_relays_keep_dying_is_parked_not_tried_again() -> None:
    order = services.create_order("shop-1")
    # Two claims whose relays died before writing an outcome (attempts count claims).
    OutboxEvent.objects.update(attempts=2)
    publisher = RecordingPublisher()
    assert Relay(publisher, listen=False).run(once=True) is False
    assert publisher.events == []
    event = events_of(order)[0]
    assert event.status == OutboxEvent.Status.DEAD
    assert "claimed 3 times without an outcome" in event.last_error


def test_the_publisher_is_closed_when_the_relay_stops() -> None:
    publisher = RecordingPublisher()
    services.create_order("shop-1")
    assert Relay(publisher, listen=False).run(once=True) is True
    assert publisher.closed
    assert len(publisher.events) == 1


def test_one_log_line_per_batch(caplog: pytest.LogCaptureFixture) -> None:
    order_with_three_events()
    with caplog.at_level(logging.INFO, logger="django_orders"):
        Relay(RecordingPublisher(), listen=False).run(once=True)
    batches = [r for r in caplog.records if r.getMessage().startswith("outbox batch")]
    assert len(batches) == 3  # created, then confirmed, then closed: each unblocks the next
    assert all(r.name.startswith("django_orders") for r in batches)
    assert batches[0].outbox_batch == {  # type: ignore[attr-defined]
        "claimed": 1,
        "published": 1,
        "failed": 0,
        "dead": 0,
        "lost": 0,
        "released": 0,
        "duration_ms": batches[0].outbox_batch["duration_ms"],  # type: ignore[attr-defined]
    }
    assert "claimed=1 published=1 failed=0 dead=0" in batches[0].getMessage()


def test_the_relay_says_which_mode_it_runs_in(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="django_orders"):
        Relay(RecordingPublisher(), listen=False).run(once=True)
    started = next(
        r.getMessage() for r in caplog.records if r.getMessage().startswith("Outbox relay started")
    )
    if connection.vendor == "postgresql":
        assert "mode=concurrent (PostgreSQL via psycopg" in started
        assert "SELECT ... FOR UPDATE SKIP LOCKED" in started
    else:
        assert "mode=single relay (sqlite has no SKIP LOCKED)" in started
        assert "exclusive lock" in started


# -- claims, leases, fencing -----------------------------------------------------------


def test_a_claimed_event_is_not_claimed_again_while_leased() -> None:
    services.create_order("shop-1")
    store = claim_store_for("default")
    claim = store.claim(10)
    assert claim is not None
    assert len(claim.events) == 1
    assert claim.events[0].attempts == 1  # counted at claim time
    assert claim.events[0].lease_token == claim.token
    assert store.claim(10) is None


def test_only_the_oldest_unfinished_event_of_an_order_is_claimable() -> None:
    order = order_with_three_events()
    store = claim_store_for("default")
    claim = store.claim(10)
    assert claim is not None
    assert [e.aggregate_version for e in claim.events] == [1]
    store.settle(claim.token, [claim.events[0].id], [])
    claim = store.claim(10)
    assert claim is not None
    assert [(e.aggregate_id, e.aggregate_version) for e in claim.events] == [(order.id, 2)]


def test_an_expired_lease_is_claimed_again() -> None:
    services.create_order("shop-1")
    store = claim_store_for("default")
    first = store.claim(10)
    assert first is not None
    OutboxEvent.objects.update(leased_until=timezone.now() - dt.timedelta(seconds=1))
    second = store.claim(10)
    assert second is not None
    assert second.token != first.token
    assert second.events[0].id == first.events[0].id
    assert second.events[0].attempts == 2


def test_a_relay_that_lost_its_lease_cannot_overwrite_the_new_owners_result() -> None:
    services.create_order("shop-1")
    store = claim_store_for("default")
    stale = store.claim(10)
    assert stale is not None
    event_id = stale.events[0].id
    OutboxEvent.objects.update(leased_until=timezone.now() - dt.timedelta(seconds=1))
    owner = store.claim(10)
    assert owner is not None

    # The new owner publishes; the stale relay then reports a failure: nothing changes.
    assert store.settle(owner.token, [event_id], []).published == 1
    late = Failure(
        event=stale.events[0], error="late failure", dead=True, available_at=timezone.now()
    )
    settled = store.settle(stale.token, [], [late])
    assert (settled.published, settled.retried, settled.dead) == (0, 0, 0)
    event = OutboxEvent.objects.get(id=event_id)
    assert event.status == OutboxEvent.Status.PUBLISHED
    assert event.last_error == ""

    # Nor can a stale relay mark as published what the new owner holds, or renew it.
    services.create_order("shop-1")
    stale = store.claim(10)
    assert stale is not None
    OutboxEvent.objects.filter(status="pending").update(
        leased_until=timezone.now() - dt.timedelta(seconds=1)
    )
    owner = store.claim(10)
    assert owner is not None
    assert store.settle(stale.token, [stale.events[0].id], []).published == 0
    assert store.renew(stale) == 0
    assert store.renew(owner) == 1
    assert OutboxEvent.objects.get(id=owner.events[0].id).status == "pending"


def test_renewing_extends_the_lease() -> None:
    services.create_order("shop-1")
    store = claim_store_for("default")
    claim = store.claim(10)
    assert claim is not None
    OutboxEvent.objects.update(leased_until=timezone.now() + dt.timedelta(seconds=1))
    assert store.renew(claim) == 1
    event = OutboxEvent.objects.get()
    assert event.leased_until is not None
    assert event.leased_until > timezone.now() + dt.timedelta(seconds=25)


def test_reconfirm_renews_what_a_claim_still_holds_and_names_it() -> None:
    """Before sending a batch whose lease may have run out, the relay asks the database
    which of its events it still holds: those another relay claimed since are not its."""
    for _ in range(3):
        services.create_order("shop-1")
    store = claim_store_for("default")
    stale = store.claim(10)
    assert stale is not None
    assert len(stale.events) == 3
    taken = stale.events[0].id
    OutboxEvent.objects.filter(id=taken).update(leased_until=timezone.now())
    owner = store.claim(10)  # another relay takes the one whose lease ran out
    assert owner is not None
    assert owner.ids == [taken]
    OutboxEvent.objects.exclude(id=taken).update(leased_until=timezone.now())  # ran out too
    stale.leased_at -= 3600  # by the relay's clock, long ago (it was paused)

    held = store.reconfirm(stale)

    assert held == {event.id for event in stale.events[1:]}
    for event in OutboxEvent.objects.exclude(id=taken):  # renewed: still this relay's
        assert event.leased_until is not None
        assert event.leased_until > timezone.now() + dt.timedelta(seconds=25)
    assert stale.leased_at > time.monotonic() - 60


def test_a_renewal_that_finds_an_event_taken_leaves_the_claim_looking_old() -> None:
    """A partial renewal must not make the relay believe its whole batch is still held."""
    services.create_order("shop-1")
    services.create_order("shop-1")
    store = claim_store_for("default")
    claim = store.claim(10)
    assert claim is not None
    claim.leased_at -= 3600
    OutboxEvent.objects.filter(id=claim.events[0].id).update(lease_token=uuid.uuid4())

    assert store.renew(claim) == 1
    assert claim.leased_at < time.monotonic() - 3000
    OutboxEvent.objects.filter(id=claim.events[0].id).update(lease_token=claim.token)
    assert store.renew(claim) == 2
    assert claim.leased_at > time.monotonic() - 60


def test_a_stopping_relay_releases_the_claim_it_has_not_started() -> None:
    services.create_order("shop-1")
    publisher = RecordingPublisher()
    relay = Relay(publisher, listen=False)
    relay.stop()
    assert relay.process_batch() is None
    event = OutboxEvent.objects.get()
    assert (event.status, event.attempts, event.lease_token) == ("pending", 0, None)
    assert publisher.events == []


def test_a_stop_mid_batch_releases_what_was_not_sent() -> None:
    bulk_events(5, versions=1)
    relay: Relay

    class StopsAfterTwo(RecordingPublisher):
        def publish(self, event: dict[str, object]) -> None:
            super().publish(event)
            if len(self.events) == 2:
                relay.stop()  # as SIGTERM arriving while the second event was in flight

    publisher = StopsAfterTwo()
    relay = Relay(publisher, listen=False)
    assert relay.run(once=True) is True  # released events are not failures

    assert len(publisher.events) == 2
    assert (relay.totals.published, relay.totals.released, relay.totals.lost) == (2, 3, 0)
    sent = {e["id"] for e in publisher.events}
    for event in OutboxEvent.objects.all():
        if str(event.id) in sent:
            assert event.status == "published"
        else:  # due at once for the next relay: no lease, attempt undone, no error
            assert (event.status, event.attempts, event.lease_token) == ("pending", 0, None)
            assert event.last_error == ""
            assert event.available_at <= timezone.now()


def test_a_publisher_serves_a_new_relay_after_a_stopped_one() -> None:
    publisher = RecordingPublisher()
    stopped = Relay(publisher, listen=False)
    stopped.stop()
    assert stopped.run(once=True) is True
    assert publisher.stop_requested

    services.create_order("shop-1")
    assert Relay(publisher, listen=False).run(once=True) is True
    assert len(publisher.events) == 1


def test_not_sent_while_not_stopping_is_a_failure_with_backoff() -> None:
    class Confused(RecordingPublisher):
        def publish_batch(self, events):  # type: ignore[no-untyped-def]
            return [NotSent("not sent") for _ in events]

    order = services.create_order("shop-1")
    relay = Relay(Confused(), listen=False)
    assert relay.run(once=True) is False
    event = events_of(order)[0]
    # Released instead, it would be due again at once: a hot loop.
    assert (event.status, event.attempts, relay.totals.released) == ("pending", 1, 0)
    assert event.available_at > event.created_at


@pytest.mark.django_db(transaction=True)
def test_each_loop_closes_old_connections() -> None:
    """django.db.close_old_connections() before every claim and every write-back, on
    whichever thread runs it: with CONN_MAX_AGE = 0 (the test settings) every batch is
    claimed and written back on fresh connections; a long-lived relay thus honours
    CONN_MAX_AGE and drops a connection the database broke."""
    assert connection.settings_dict["CONN_MAX_AGE"] == 0
    order_with_three_events()  # three batches: each event unblocks the next
    relay = Relay(RecordingPublisher(), listen=False)
    used: dict[str, list[object]] = {"claim": [], "settle": []}

    def spy(step: str, method):  # type: ignore[no-untyped-def]
        def call(*args, **kwargs):  # type: ignore[no-untyped-def]
            result = method(*args, **kwargs)
            if result is not None:
                # The driver connection this step ran on (kept referenced: ids stay unique).
                used[step].append(connections[relay.using].connection)
            return result

        return call

    relay.store.claim = spy("claim", relay.store.claim)  # type: ignore[method-assign]
    relay.store.settle = spy("settle", relay.store.settle)  # type: ignore[method-assign]
    assert relay.run(once=True) is True
    assert relay.totals.published == 3
    for step in ("claim", "settle"):
        connections_used = used[step]
        assert len(connections_used) == 3, step
        assert len({id(raw) for raw in connections_used}) == 3, step


def test_failing_publisher_helper_is_permanent_on_request() -> None:
    order = services.create_order("shop-1")
    assert Relay(FailingPublisher(permanent=True), listen=False).run(once=True) is False
    assert events_of(order)[0].status == OutboxEvent.Status.DEAD


@pytest.mark.postgres
def test_a_claim_is_a_heap_only_update() -> None:
    """The outbox table leaves room on its pages (fillfactor 50, migration 0002) and a
    claim changes no indexed column, so PostgreSQL writes the leased row version on the
    same page without an entry in any of the four indexes (a HOT update)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT reloptions FROM pg_class WHERE relname = %s",
            [OutboxEvent._meta.db_table],
        )
        assert cursor.fetchone()[0] == ["fillfactor=50"]
    for _ in range(200):  # orders as the API writes them: the realistic row size
        services.create_order("shop-1", metadata={"note": "x" * 100})
    store = claim_store_for("default")
    with connection.cursor() as cursor:
        hot = "SELECT pg_stat_get_xact_tuples_hot_updated(%s::regclass)"
        cursor.execute(hot, [OutboxEvent._meta.db_table])
        before = cursor.fetchone()[0]
        claim = store.claim(200)
        assert claim is not None
        assert len(claim.events) == 200
        cursor.execute(hot, [OutboxEvent._meta.db_table])
        assert cursor.fetchone()[0] - before == 200


@pytest.mark.postgres
def test_the_claim_probes_per_candidate_even_with_stale_statistics() -> None:
    """The steady state of a production outbox: analysed while nothing was pending, then
    a burst. The claim must still probe the unfinished index per candidate row, not scan
    it whole per candidate (that plan took ~1 s per claim on 20,000 pending events)."""
    bulk_events(2000, versions=1)
    OutboxEvent.objects.update(status="published", published_at=timezone.now())
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE django_orders_outbox_event")
    bulk_events(2000, versions=1)
    store = claim_store_for("default")
    assert isinstance(store, PostgresClaimStore)
    sql, params = store.claim_sql(uuid.uuid4(), 100)
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "SubPlan" in plan, plan
    assert "Index Cond: ((aggregate_id = e.aggregate_id)" in plan, plan

    # The writes after the claim probe by primary key / aggregate, not the pending index.
    claim = store.claim(100)
    assert claim is not None
    assert "pkey" in store.events().held(claim.token, claim.ids).explain()
    followers = store.followers(claim.events[0], PARKED_UNTIL).explain()
    # An index of the aggregate's own events: the unfinished one, or the unique
    # (tenant, type, id, version) one — never a walk of the pending index.
    assert any(
        index in followers
        for index in ("orders_outbox_unfinished", "orders_outbox_aggregate_version_unique")
    ), followers
    assert "orders_outbox_pending" not in followers, followers


# -- backoff ---------------------------------------------------------------------------


def test_backoff_is_exponential_with_full_jitter() -> None:
    rng = random.Random(4)
    for attempts in range(1, 12):
        window = min(300.0, 2.0 ** (attempts - 1))
        delays = [retry_delay(attempts, cap=300, rng=rng) for _ in range(200)]
        assert all(0 <= d <= window for d in delays)
        assert max(delays) > window * 0.8  # spread over the whole window
        assert min(delays) < window * 0.2
    assert retry_delay(1, cap=300, rng=rng) <= 1.0  # first retry within a second


def test_backoff_honours_retry_after_but_not_past_the_cap() -> None:
    assert retry_delay(1, cap=300, retry_after=20) == 20
    assert retry_delay(1, cap=300, retry_after=3600) == 300
    assert retry_delay(60, cap=10) <= 10


# -- one relay where SKIP LOCKED is missing --------------------------------------------


@pytest.mark.skipif(connection.vendor != "sqlite", reason="the single-relay lock is for SQLite")
def test_a_second_relay_on_sqlite_refuses_to_start(receiver: Receiver) -> None:
    lock = RelayLock.for_database(connection.settings_dict["NAME"])
    assert lock is not None
    lock.acquire()
    try:
        with pytest.raises(CommandError, match="Another outbox relay is already running"):
            run_once(receiver)
    finally:
        lock.release()
    assert run_once(receiver) == 0


# -- batches in flight together (Publisher.max_batches_in_flight) ----------------------


class WindowedPublisher(RecordingPublisher):
    """Answers through ``start_batch`` handles, and records how many batches were handed
    over and not yet waited for at each hand-over."""

    def __init__(self, window: int, hold: threading.Event | None = None) -> None:
        super().__init__()
        self.max_batches_in_flight = window
        self.hold = hold  # when set: wait() blocks until it is set
        self.outstanding = 0
        self.outstanding_at_start: list[int] = []
        self.on_start: Callable[[int], None] = lambda started: None
        self.started = 0

    def start_batch(self, events):  # type: ignore[no-untyped-def]
        self.outstanding += 1
        self.started += 1
        self.outstanding_at_start.append(self.outstanding)
        self.events.extend(events)
        self.on_start(self.started)
        publisher = self

        class Handle(InFlight):
            def wait(self):  # type: ignore[no-untyped-def]
                if publisher.hold is not None:
                    assert publisher.hold.wait(10)
                publisher.outstanding -= 1
                return [None] * len(events)

        return Handle([])


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres
@pytest.mark.parametrize("window", [1, 2])
def test_a_publisher_may_take_the_next_batch_before_answering_the_last(window: int) -> None:
    """With ``max_batches_in_flight = 2`` the relay hands over the next batch before it
    waits for the one before (RabbitMQ: the next batch is on the wire while confirms
    come); never more than the window; per-order order and exactly-once among healthy
    relays hold; everything is written back."""
    bulk_events(60, versions=3)
    publisher = WindowedPublisher(window)
    relay = Relay(publisher, batch_size=10, listen=False)
    assert relay.run(once=True) is True

    assert max(publisher.outstanding_at_start) == window
    ids = [event["id"] for event in publisher.events]
    assert len(ids) == len(set(ids)) == 180
    assert all(seen == [1, 2, 3] for seen in versions_by_order(publisher.events).values())
    assert OutboxEvent.objects.filter(status="published").count() == 180
    assert relay.totals.published == 180


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres
def test_a_stop_finishes_every_batch_in_flight_and_releases_the_claim_ahead() -> None:
    bulk_events(40, versions=1)
    hold = threading.Event()
    publisher = WindowedPublisher(2, hold=hold)
    relay = Relay(publisher, batch_size=10, listen=False)

    def on_start(started: int) -> None:
        if started == 2:  # two batches in flight, the third claimed ahead: stop now
            relay.stop()
            hold.set()

    publisher.on_start = on_start
    assert relay.run(once=True) is True

    assert publisher.started == 2
    assert relay.totals.published == 20
    assert OutboxEvent.objects.filter(status="published").count() == 20
    rest = OutboxEvent.objects.exclude(status="published")
    assert rest.count() == 20
    # Released, not left leased: due at once for another relay, the attempt undone.
    assert not rest.filter(lease_token__isnull=False).exists()
    assert set(rest.values_list("attempts", flat=True)) == {0}
