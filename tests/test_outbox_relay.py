"""The relay's behaviour (docs/operations.md): what ``Relay.run()`` publishes, when it
retries, parks and gives back, as a publisher and the database see it.

Every test that runs a relay runs it twice: with the ``Serial`` strategy and with the
``Pipelined`` one (claim ahead, write behind: outbox/strategies.py), on PostgreSQL and on
SQLite — the two must behave alike. Hence ``transaction=True``: the pipelined relay's
threads have connections of their own, which only see committed rows.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, connections, transaction
from django.test import override_settings
from django.utils import timezone

from django_orders import services
from django_orders.models import Order, OutboxEvent
from django_orders.outbox.claims import (
    PARKED_UNTIL,
)
from django_orders.outbox.exclusive import RelayLock
from django_orders.outbox.maintenance import discard, requeue
from django_orders.outbox.relay import Relay, RelayAlreadyRunning
from django_orders.outbox.strategies import Pipelined, Serial
from django_orders.publishers import InFlight, NotSent, WebhookPublisher
from tests.misbehaving_peers import TricklingReceiver
from tests.outbox_rows import bulk_events
from tests.receiver import Receiver, versions_by_order
from tests.relay_publishers import FailingPublisher, ReceiverPublisher, RecordingPublisher

pytestmark = pytest.mark.django_db(transaction=True)

PUBLISHER = "tests.relay_publishers.ReceiverPublisher"


MakeRelay = Callable[..., Relay]
RunOnce = Callable[..., int]


@pytest.fixture(params=["serial", "pipelined"])
def make_relay(request: pytest.FixtureRequest) -> Callable[..., Relay]:
    """Relays of the strategy under test: each checks, once it has run, that the strategy
    it ran is that one (the pipelined one needs connections that see committed rows)."""
    pipelined = request.param == "pipelined"

    def make(publisher: Any, **options: Any) -> Relay:
        options.setdefault("listen", False)
        relay = Relay(publisher, pipeline=pipelined, **options)
        run = relay.run

        def checked_run(**kwargs: Any) -> bool:
            result = run(**kwargs)
            assert isinstance(relay.strategy, Pipelined if pipelined else Serial)
            return result

        relay.run = checked_run  # type: ignore[method-assign]
        return relay

    return make


@pytest.fixture
def run_once(make_relay: MakeRelay) -> RunOnce:
    """A relay publishing to the receiver until nothing is due, like ``--once``; returns
    the command's exit status (0: every publish succeeded)."""

    def run(receiver: Receiver, *, batch_size: int | None = None) -> int:
        relay = make_relay(ReceiverPublisher(url=receiver.url), batch_size=batch_size)
        return 0 if relay.run(once=True) else 1

    return run


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


def test_once_publishes_created_confirmed_closed_in_one_run(
    receiver: Receiver, run_once: RunOnce
) -> None:
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


def test_once_publishes_every_order_and_tenant(receiver: Receiver, run_once: RunOnce) -> None:
    orders = [order_with_three_events(tenant) for tenant in ("shop-1", "shop-2", "shop-1")]

    assert run_once(receiver, batch_size=2) == 0

    assert receiver.count() == 9
    assert receiver.versions_by_order() == {str(o.id): [1, 2, 3] for o in orders}
    assert not OutboxEvent.objects.exclude(status=OutboxEvent.Status.PUBLISHED).exists()


def test_once_with_nothing_due_exits_0(receiver: Receiver, run_once: RunOnce) -> None:
    assert run_once(receiver) == 0
    assert receiver.count() == 0


def test_the_cloudevent_on_the_wire(receiver: Receiver, run_once: RunOnce) -> None:
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


def test_failure_exits_1_and_backs_off(receiver: Receiver, run_once: RunOnce) -> None:
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


def test_once_does_not_retry_what_failed_in_the_same_run(
    receiver: Receiver, run_once: RunOnce
) -> None:
    services.create_order("shop-1")
    receiver.status = 503
    assert run_once(receiver) == 1
    assert receiver.refused == 1


def test_retry_after_is_honoured_within_the_cap(receiver: Receiver, run_once: RunOnce) -> None:
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


def test_permanent_error_parks_the_event_as_dead_at_once(
    receiver: Receiver, run_once: RunOnce
) -> None:
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
def test_max_attempts_parks_the_event_as_dead(receiver: Receiver, run_once: RunOnce) -> None:
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


def test_dead_event_blocks_its_order_until_requeued(receiver: Receiver, run_once: RunOnce) -> None:
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


def test_discarding_a_dead_event_unblocks_its_order(receiver: Receiver, run_once: RunOnce) -> None:
    order = order_with_three_events()
    OutboxEvent.objects.filter(aggregate_id=order.id, aggregate_version=1).update(
        status=OutboxEvent.Status.DEAD
    )
    # discard() touches dead events only.
    assert discard(OutboxEvent.objects.filter(aggregate_id=order.id)) == 1
    assert run_once(receiver) == 0
    assert receiver.versions_by_order() == {str(order.id): [2, 3]}


@override_settings(DJANGO_ORDERS={"OUTBOX_DEAD_BLOCKS_ORDER": False})
def test_dead_event_need_not_block_its_order(receiver: Receiver, run_once: RunOnce) -> None:
    order = order_with_three_events()
    OutboxEvent.objects.filter(aggregate_id=order.id, aggregate_version=1).update(
        status=OutboxEvent.Status.DEAD
    )
    assert run_once(receiver) == 0
    assert receiver.versions_by_order() == {str(order.id): [2, 3]}


def test_a_failure_defers_the_later_events_of_its_order(
    receiver: Receiver, run_once: RunOnce
) -> None:
    order = order_with_three_events()
    receiver.status = 503
    assert run_once(receiver) == 1
    first, *later = events_of(order)
    # They could not go before it anyway; deferred, they stay out of every claim's way.
    assert all(e.available_at == first.available_at for e in later)
    assert all(e.attempts == 0 for e in later)


def test_a_receiver_that_never_finishes_its_answer_costs_one_timeout_with_backoff(
    make_relay: MakeRelay,
) -> None:
    """The webhook publisher against a receiver that trickles its answer to one order's
    events (one byte every 20 ms, 20 s in all) and answers the others at once.

    The trickled attempt fails at the publisher's ``timeout`` (1 s), is recorded as a
    failed attempt with backoff, and its order's later events wait behind it. The other
    orders' events of the same batch were sent meanwhile by the publisher's other workers
    (``max_concurrency``), and their later events go out in the same run. (What the
    per-batch breaker does not spare: events of the batch *not yet sent* when the deadline
    passes fail as "not sent" and are retried after backoff.)
    """
    slow = order_with_three_events()
    others = [order_with_three_events() for _ in range(3)]
    slow_subject = str(slow.id).encode()
    with TricklingReceiver(
        lambda body: "trickle-body" if slow_subject in body else "ok", interval=0.02
    ) as peer:
        before = timezone.now()
        started = time.monotonic()
        publisher = WebhookPublisher(
            url=peer.url,
            secret="whsec_" + base64.b64encode(b"k" * 32).decode(),
            timeout=1.0,
            max_concurrency=4,
        )
        all_published = make_relay(publisher).run(once=True)
        elapsed = time.monotonic() - started

    assert all_published is False  # --once would exit 1
    assert elapsed < 10  # one timeout, not the 20 s the trickle lasts
    first, *later = events_of(slow)
    assert first.status == OutboxEvent.Status.PENDING
    assert first.attempts == 1
    assert "timed out after 1s" in first.last_error
    assert first.available_at > before
    assert first.lease_token is None
    assert all(e.attempts == 0 for e in later)
    delivered = [json.loads(body) for body in peer.bodies if slow_subject not in body]
    assert versions_by_order(delivered) == {str(o.id): [1, 2, 3] for o in others}
    for order in others:
        assert {e.status for e in events_of(order)} == {OutboxEvent.Status.PUBLISHED}


def test_a_dead_event_parks_its_order_and_requeue_releases_it(
    receiver: Receiver, run_once: RunOnce
) -> None:
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


def test_discard_releases_a_parked_order(receiver: Receiver, run_once: RunOnce) -> None:
    order = order_with_three_events()
    receiver.status = 400
    assert run_once(receiver) == 1
    receiver.status = 200
    assert discard(OutboxEvent.objects.all()) == 1
    assert run_once(receiver) == 0
    assert receiver.versions_by_order() == {str(order.id): [2, 3]}


def test_turning_dead_blocking_off_releases_parked_events(
    receiver: Receiver, run_once: RunOnce
) -> None:
    order = order_with_three_events()
    receiver.status = 400
    assert run_once(receiver) == 1
    receiver.status = 200
    with override_settings(DJANGO_ORDERS={"OUTBOX_DEAD_BLOCKS_ORDER": False}):
        assert run_once(receiver) == 0
    assert receiver.versions_by_order() == {str(order.id): [2, 3]}
    assert events_of(order)[0].status == OutboxEvent.Status.DEAD


def test_a_raising_publisher_counts_as_a_transient_failure(make_relay: MakeRelay) -> None:
    class Broken(RecordingPublisher):
        def publish_batch(self, events):  # type: ignore[no-untyped-def]
            raise ConnectionResetError("broker went away")

    order = services.create_order("shop-1")
    relay = make_relay(Broken())
    assert relay.run(once=True) is False
    event = events_of(order)[0]
    assert event.status == "pending"
    assert event.attempts == 1
    assert "ConnectionResetError: broker went away" in event.last_error


def test_a_publisher_answering_the_wrong_number_of_results_fails_the_batch(
    make_relay: MakeRelay,
) -> None:
    class Short(RecordingPublisher):
        def publish_batch(self, events):  # type: ignore[no-untyped-def]
            return []

    order = services.create_order("shop-1")
    assert make_relay(Short()).run(once=True) is False
    event = events_of(order)[0]
    assert event.status == "pending"
    assert "the publisher returned 0 results for 1 events" in event.last_error


def test_an_event_that_cannot_be_built_is_dead_the_others_go_out(
    monkeypatch: pytest.MonkeyPatch, make_relay: MakeRelay
) -> None:
    broken = services.create_order("shop-1")
    fine = services.create_order("shop-1")
    from django_orders.outbox import batches as batches_module

    def to_cloudevent(event: OutboxEvent) -> dict[str, object]:
        if event.aggregate_id == str(broken.id):
            raise ValueError("unbuildable")
        return {"id": str(event.id)}

    monkeypatch.setattr(batches_module, "to_cloudevent", to_cloudevent)
    publisher = RecordingPublisher()
    assert make_relay(publisher).run(once=True) is False
    assert publisher.events == [{"id": str(events_of(fine)[0].id)}]
    dead = events_of(broken)[0]
    assert dead.status == OutboxEvent.Status.DEAD
    assert "ValueError: unbuildable" in dead.last_error


@override_settings(DJANGO_ORDERS={"OUTBOX_MAX_ATTEMPTS": 2})
def test_an_event_whose_relays_keep_dying_is_parked_not_tried_again(make_relay: MakeRelay) -> None:
    order = services.create_order("shop-1")
    # Two claims whose relays died before writing an outcome (attempts count claims).
    OutboxEvent.objects.update(attempts=2)
    publisher = RecordingPublisher()
    assert make_relay(publisher).run(once=True) is False
    assert publisher.events == []
    event = events_of(order)[0]
    assert event.status == OutboxEvent.Status.DEAD
    assert "claimed 3 times without an outcome" in event.last_error


def test_the_publisher_is_closed_when_the_relay_stops(make_relay: MakeRelay) -> None:
    publisher = RecordingPublisher()
    services.create_order("shop-1")
    assert make_relay(publisher).run(once=True) is True
    assert publisher.closed
    assert len(publisher.events) == 1


def test_one_log_line_per_batch(caplog: pytest.LogCaptureFixture, make_relay: MakeRelay) -> None:
    order_with_three_events()
    with caplog.at_level(logging.INFO, logger="django_orders"):
        make_relay(RecordingPublisher()).run(once=True)
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


def test_the_relay_says_which_mode_it_runs_in(
    caplog: pytest.LogCaptureFixture, make_relay: MakeRelay
) -> None:
    with caplog.at_level(logging.INFO, logger="django_orders"):
        relay = make_relay(RecordingPublisher())
        relay.run(once=True)
    started = next(
        r.getMessage() for r in caplog.records if r.getMessage().startswith("Outbox relay started")
    )
    overlapped = "yes" if isinstance(relay.strategy, Pipelined) else "no"
    assert f"claim ahead and write behind={overlapped}" in started
    if connection.vendor == "postgresql":
        assert "mode=concurrent (PostgreSQL via psycopg" in started
        assert "SELECT ... FOR UPDATE SKIP LOCKED" in started
    else:
        assert "mode=single relay (sqlite has no SKIP LOCKED)" in started
        assert "exclusive lock" in started


def test_a_stopping_relay_releases_the_claim_it_has_not_started() -> None:
    services.create_order("shop-1")
    publisher = RecordingPublisher()
    relay = Relay(publisher, listen=False)
    relay.stop()
    assert relay.process_batch() is None
    event = OutboxEvent.objects.get()
    assert (event.status, event.attempts, event.lease_token) == ("pending", 0, None)
    assert publisher.events == []


def test_a_stop_mid_batch_releases_what_was_not_sent(make_relay: MakeRelay) -> None:
    bulk_events(5, versions=1)
    relay: Relay

    class StopsAfterTwo(RecordingPublisher):
        def publish(self, event: dict[str, object]) -> None:
            super().publish(event)
            if len(self.events) == 2:
                relay.stop()  # as SIGTERM arriving while the second event was in flight

    publisher = StopsAfterTwo()
    relay = make_relay(publisher)
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


def test_a_publisher_serves_a_new_relay_after_a_stopped_one(make_relay: MakeRelay) -> None:
    publisher = RecordingPublisher()
    stopped = make_relay(publisher)
    stopped.stop()
    assert stopped.run(once=True) is True
    assert publisher.stop_requested

    services.create_order("shop-1")
    assert make_relay(publisher).run(once=True) is True
    assert len(publisher.events) == 1


def test_not_sent_while_not_stopping_is_a_failure_with_backoff(make_relay: MakeRelay) -> None:
    class Confused(RecordingPublisher):
        def publish_batch(self, events):  # type: ignore[no-untyped-def]
            return [NotSent("not sent") for _ in events]

    order = services.create_order("shop-1")
    relay = make_relay(Confused())
    assert relay.run(once=True) is False
    event = events_of(order)[0]
    # Released instead, it would be due again at once: a hot loop.
    assert (event.status, event.attempts, relay.totals.released) == ("pending", 1, 0)
    assert event.available_at > event.created_at


def test_each_loop_closes_old_connections(make_relay: MakeRelay) -> None:
    """django.db.close_old_connections() before every claim and every write-back, on
    whichever thread runs it: with CONN_MAX_AGE = 0 (the test settings) every batch is
    claimed and written back on fresh connections; a long-lived relay thus honours
    CONN_MAX_AGE and drops a connection the database broke."""
    assert connection.settings_dict["CONN_MAX_AGE"] == 0
    order_with_three_events()  # three batches: each event unblocks the next
    relay = make_relay(RecordingPublisher())
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


def test_failing_publisher_helper_is_permanent_on_request(make_relay: MakeRelay) -> None:
    order = services.create_order("shop-1")
    assert make_relay(FailingPublisher(permanent=True)).run(once=True) is False
    assert events_of(order)[0].status == OutboxEvent.Status.DEAD


# -- one relay where SKIP LOCKED is missing --------------------------------------------


@pytest.mark.skipif(connection.vendor != "sqlite", reason="the single-relay lock is for SQLite")
def test_a_second_relay_on_sqlite_refuses_to_start(receiver: Receiver, run_once: RunOnce) -> None:
    lock = RelayLock.for_database(connection.settings_dict["NAME"])
    assert lock is not None
    lock.acquire()
    try:
        with pytest.raises(RelayAlreadyRunning, match="Another outbox relay is already running"):
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


@pytest.mark.parametrize("window", [1, 2])
def test_a_publisher_may_take_the_next_batch_before_answering_the_last(window: int) -> None:
    """With ``max_batches_in_flight = 2`` the pipelined relay hands over the next batch
    before it waits for the one before (RabbitMQ: the next batch is on the wire while
    confirms come); never more than the window; per-order order and exactly-once among
    healthy relays hold; everything is written back."""
    bulk_events(60, versions=3)
    publisher = WindowedPublisher(window)
    relay = Relay(publisher, batch_size=10, listen=False)
    assert relay.run(once=True) is True
    assert isinstance(relay.strategy, Pipelined)

    assert max(publisher.outstanding_at_start) == window
    ids = [event["id"] for event in publisher.events]
    assert len(ids) == len(set(ids)) == 180
    assert all(seen == [1, 2, 3] for seen in versions_by_order(publisher.events).values())
    assert OutboxEvent.objects.filter(status="published").count() == 180
    assert relay.totals.published == 180


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

    assert isinstance(relay.strategy, Pipelined)
    assert publisher.started == 2
    assert relay.totals.published == 20
    assert OutboxEvent.objects.filter(status="published").count() == 20
    rest = OutboxEvent.objects.exclude(status="published")
    assert rest.count() == 20
    # Released, not left leased: due at once for another relay, the attempt undone.
    assert not rest.filter(lease_token__isnull=False).exists()
    assert set(rest.values_list("attempts", flat=True)) == {0}
