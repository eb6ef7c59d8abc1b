"""docs/operations.md with real processes: relays started as ``python -m django
orders_outbox_relay`` against the test database, publishing to a real HTTP receiver;
killed, stopped, run side by side, woken by NOTIFY."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from django_orders import services
from django_orders.models import OutboxEvent
from tests.outbox_rows import bulk_events
from tests.receiver import Receiver, versions_by_order
from tests.relay_runs import RelayProcess, all_ids, is_stopped, relay_env, relays
from tests.waiting import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def assert_in_version_order(receiver: Receiver) -> None:
    for order, versions in receiver.versions_by_order().items():
        assert versions == sorted(versions), f"order {order} arrived as {versions}"


def test_sigkill_while_publishing_loses_nothing(receiver: Receiver, log_dir: Path) -> None:
    bulk_events(1500, versions=2)  # 3,000 events
    expected = all_ids()
    env = relay_env(receiver, OUTBOX_LEASE=2, OUTBOX_POLL_INTERVAL=0.2)

    first = RelayProcess(log_dir / "first.log", env, "--batch-size", "50")
    try:
        wait_until(lambda: receiver.count() >= 500, 60, "first deliveries")
    finally:
        first.kill()  # SIGKILL, mid-stream: a batch is in flight
    assert receiver.count() < len(expected), "the relay finished before it was killed"

    with relays(log_dir, 1, env, "--batch-size", "50") as (second,):
        wait_until(lambda: set(receiver.ids()) >= expected, 90, "every event delivered")
        second.signal(signal.SIGTERM)
        assert second.wait(10) == 0

    assert set(receiver.ids()) == expected
    # At least once: only what the killed relay had sent without recording it may come
    # twice — the batch in flight and the one whose write-back had not committed.
    assert len(receiver.ids()) - len(expected) <= 2 * 50
    assert not OutboxEvent.objects.exclude(status="published").exists()
    assert_in_version_order(receiver)


def test_receiver_refuses_for_a_while_then_recovers(receiver: Receiver, log_dir: Path) -> None:
    bulk_events(30, versions=3)
    expected = all_ids()
    receiver.status = 503
    env = relay_env(receiver, OUTBOX_BACKOFF_MAX=1.5, OUTBOX_POLL_INTERVAL=0.1)

    with relays(log_dir, 1, env) as (relay,):
        # Attempts and backoff are visible while the receiver refuses.
        wait_until(
            lambda: OutboxEvent.objects.filter(attempts__gte=3).count() >= 10,
            30,
            "repeated attempts",
        )
        assert OutboxEvent.objects.filter(available_at__gt=timezone.now()).exists()
        assert not OutboxEvent.objects.filter(status="dead").exists()
        assert receiver.count() == 0

        receiver.status = 200
        wait_until(lambda: set(receiver.ids()) >= expected, 30, "everything delivered")
        relay.signal(signal.SIGTERM)
        assert relay.wait(10) == 0

    assert receiver.refused >= 30
    assert not OutboxEvent.objects.exclude(status="published").exists()
    assert len(receiver.ids()) == len(expected)  # one relay, healthy: no duplicates
    assert_in_version_order(receiver)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_sigterm_finishes_the_batch_in_hand_and_exits_0(
    receiver: Receiver, log_dir: Path, signum: signal.Signals
) -> None:
    bulk_events(100, versions=2)
    expected = all_ids()
    receiver.delay = 0.03  # a batch of 20 takes about 0.6 s
    env = relay_env(receiver)

    with relays(log_dir, 1, env, "--batch-size", "20") as (relay,):
        wait_until(lambda: receiver.count() >= 10, 30, "first deliveries")
        signalled = time.monotonic()
        relay.signal(signum)
        assert relay.wait(10) == 0
        assert time.monotonic() - signalled < 3
        assert f"Received {signum.name}" in relay.output()

    received = set(receiver.ids())
    published = {
        str(pk)
        for pk in OutboxEvent.objects.filter(status="published").values_list("id", flat=True)
    }
    assert received == published  # the batch in hand was finished and recorded
    assert len(received) < len(expected)
    # Nothing left leased: the rest is due at once for the next relay.
    assert not OutboxEvent.objects.filter(lease_token__isnull=False).exists()

    receiver.delay = 0
    with relays(log_dir, 1, env, "--once") as (again,):
        assert again.wait(60) == 0
    assert set(receiver.ids()) == expected
    assert len(receiver.ids()) == len(expected)


def test_a_publish_that_outlives_its_timeout_after_sigterm_exits_1(log_dir: Path) -> None:
    """The stop waits for the publish in hand only as long as the publisher's timeout
    (plus 2 s): a publisher stuck past it makes the relay give up and exit 1; its leased
    events come back after the lease."""
    bulk_events(1, versions=1)
    env = relay_env(None, OUTBOX_LEASE=2)
    with relays(log_dir, 1, env, "--publisher", "tests.relay_publishers.StuckPublisher") as (
        relay,
    ):
        wait_until(lambda: "publish started" in relay.output(), 30, "the stuck publish")
        signalled = time.monotonic()
        relay.signal(signal.SIGTERM)
        assert relay.wait(10) == 1
        assert time.monotonic() - signalled < 0.5 + 2 + 2  # timeout + grace + slack
        assert "outlived the publisher's timeout" in relay.output()
    assert OutboxEvent.objects.get().status == "pending"


def test_sigterm_mid_batch_gives_back_what_it_has_not_sent(
    receiver: Receiver, log_dir: Path
) -> None:
    """A slow receiver and a big batch: SIGTERM finishes the send in flight, releases the
    rest of the batch (due at once, attempt undone) and exits 0 — it does not wait for
    the whole batch, nor leave it leased."""
    bulk_events(20, versions=1)
    expected = all_ids()
    receiver.delay = 1.0  # one at a time: the whole batch would take 20 s
    env = relay_env(receiver)  # the default 30 s lease

    with relays(log_dir, 1, env, "--batch-size", "20") as (relay,):
        wait_until(lambda: receiver.count() >= 1, 30, "the first delivery")
        signalled = time.monotonic()
        relay.signal(signal.SIGTERM)
        assert relay.wait(10) == 0, relay.output()
        assert time.monotonic() - signalled < 4
        assert "released" in relay.output()

    received = set(receiver.ids())
    assert 1 <= len(received) < len(expected)
    published = {
        str(pk)
        for pk in OutboxEvent.objects.filter(status="published").values_list("id", flat=True)
    }
    assert published == received
    rest = OutboxEvent.objects.exclude(status="published")
    assert {(e.status, e.attempts, e.lease_token, e.last_error) for e in rest} == {
        ("pending", 0, None, "")
    }

    # Due at once, not after the 30 s lease: the next run delivers them, each once.
    receiver.delay = 0
    with relays(log_dir, 1, env, "--once") as (again,):
        assert again.wait(60) == 0
    assert sorted(receiver.ids()) == sorted(expected)


def test_a_second_signal_exits_at_once(receiver: Receiver, log_dir: Path) -> None:
    bulk_events(20, versions=1)
    receiver.delay = 4.0  # the send in flight takes 4 s (the test publisher's timeout: 5 s)
    env = relay_env(receiver, OUTBOX_LEASE=1)

    with relays(log_dir, 1, env) as (relay,):
        wait_until(lambda: receiver.started >= 1, 30, "the first send in flight")
        relay.signal(signal.SIGINT)
        wait_until(lambda: "Received SIGINT" in relay.output(), 5, "first signal logged")
        signalled = time.monotonic()
        relay.signal(signal.SIGINT)
        assert relay.wait(5) == 1
        assert time.monotonic() - signalled < 2

    # What it held (up to three batches: the one written back, the one in hand and the one
    # claimed ahead) comes back once its lease runs out; wait for that rather than racing
    # it, then one run delivers everything.
    receiver.delay = 0
    expected = all_ids()
    wait_until(
        lambda: not OutboxEvent.objects.filter(leased_until__gt=timezone.now()).exists(),
        30,
        "the dead relay's leases to run out",
    )
    with relays(log_dir, 1, env, "--once") as (again,):
        assert again.wait(60) == 0
    assert set(receiver.ids()) == expected


@pytest.mark.postgres
@pytest.mark.parametrize("count", [2, 4])
def test_several_relays_never_publish_twice_and_keep_order_per_order(
    receiver: Receiver, log_dir: Path, count: int
) -> None:
    bulk_events(150, versions=3)
    env = relay_env(receiver, OUTBOX_POLL_INTERVAL=0.2)

    with relays(log_dir, count, env, "--batch-size", "7") as running:
        for relay in running:
            relay.wait_started()
        bulk_events(150, versions=3)  # written while the relays run: NOTIFY-free bulk
        for _ in range(30):  # and through the domain layer, which NOTIFYs
            services.create_order("shop-2")
        expected = all_ids()
        wait_until(lambda: receiver.count() >= len(expected), 60, "every event delivered")
        for relay in running:
            relay.signal(signal.SIGTERM)
        assert [relay.wait(10) for relay in running] == [0] * count

    ids = receiver.ids()
    assert len(ids) == len(set(ids)), "an event was published twice"
    assert set(ids) == expected
    assert_in_version_order(receiver)
    assert not OutboxEvent.objects.exclude(status="published").exists()
    # Every relay took part.
    assert all("outbox batch" in relay.output() for relay in running)


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("driver", "batches"),
    [("default", 1), ("psycopg2", 1), ("default", 2)],
    ids=["in-hand", "in-hand-psycopg2", "claimed-ahead"],
)
def test_a_slow_batch_keeps_its_lease(
    receiver: Receiver, log_dir: Path, driver: str, batches: int
) -> None:
    """A batch of 8 takes three leases to publish; its lease is renewed all that time, so
    a second relay never takes it. With two batches the second, claimed ahead, waits
    behind the first as long: its lease is renewed from its claim on."""
    bulk_events(8 * batches, versions=1)
    receiver.delay = 0.75  # a batch takes 6 s, three times the lease
    env = relay_env(receiver, OUTBOX_LEASE=2, OUTBOX_POLL_INTERVAL=0.1)

    # The renewal (raw SQL with an interval and a uuid[] parameter) through either driver.
    with relays(log_dir, 1, env, "--batch-size", "8", driver=driver) as (first,):
        wait_until(lambda: receiver.count() >= 1, 30, "the slow batch has started")
        (log_dir / "second").mkdir()
        with relays(log_dir / "second", 1, env, "--batch-size", "8") as (second,):
            second.wait_started()
            wait_until(lambda: receiver.count() >= 8 * batches, 60, "the slow batches done")
            for relay in (first, second):
                relay.signal(signal.SIGTERM)
            assert second.wait(10) == 0
        assert first.wait(10) == 0

    ids = receiver.ids()
    assert len(ids) == len(set(ids)) == 8 * batches, "a leased batch was claimed twice"
    assert "Renewed the lease of 8 events" in first.output()
    assert "claim ahead and write behind=yes" in first.output()
    if driver == "psycopg2":
        assert "PostgreSQL via psycopg2," in first.output()


def asleep(relay: RelayProcess) -> bool:
    """The relay found nothing due and waits (its debug lines say so)."""
    output = relay.output()
    return output.count("Nothing due") == output.count("Woken by") + 1


@pytest.mark.postgres
@pytest.mark.parametrize("driver", ["default", "psycopg2"])
@pytest.mark.parametrize("listen", [True, False], ids=["listen", "no-listen"])
def test_notify_wakes_the_relay(
    receiver: Receiver, log_dir: Path, listen: bool, driver: str
) -> None:
    env = relay_env(receiver, OUTBOX_POLL_INTERVAL=30)
    args = () if listen else ("--no-listen",)
    services.create_order("shop-1")

    with relays(log_dir, 1, env, *args, driver=driver) as (relay,):
        relay.wait_started()
        # The first event goes out in the first poll; then the relay sleeps 30 s.
        wait_until(lambda: receiver.count() == 1, 20, "the first event")
        latencies = []
        for _ in range(5):
            wait_until(lambda: asleep(relay), 10, "an idle relay")
            before = receiver.count()
            services.create_order("shop-1")  # autocommit: NOTIFY on commit
            committed = time.monotonic()
            if not listen:
                with pytest.raises(AssertionError):
                    wait_until(lambda n=before: receiver.count() > n, 1.0)
                break
            wait_until(lambda n=before: receiver.count() > n, 5, "a woken relay")
            latencies.append(receiver.received[-1]["_received_at"] - committed)
        relay.signal(signal.SIGTERM)
        assert relay.wait(10) == 0

    if driver == "psycopg2":
        assert "PostgreSQL via psycopg2," in relay.output()
    if listen:
        assert "LISTEN django_orders_outbox" in relay.output()
        assert max(latencies) < 0.5, latencies  # 30 s poll interval: NOTIFY did it
    else:
        assert "wake-up=poll every 30.0s" in relay.output()


def test_relay_refuses_bad_options(log_dir: Path) -> None:
    env = relay_env()
    relay = RelayProcess(log_dir / "bad.log", env, "--batch-size", "0")
    assert relay.wait(30) == 2
    assert "--batch-size" in relay.output()


@pytest.mark.skipif(connection.vendor != "sqlite", reason="the single-relay lock is for SQLite")
def test_a_second_relay_process_on_sqlite_refuses_to_start(
    receiver: Receiver, log_dir: Path
) -> None:
    env = relay_env(receiver)
    with relays(log_dir, 1, env) as (first,):
        first.wait_started()
        second = RelayProcess(log_dir / "second.log", env)
        assert second.wait(30) == 1
        assert "Another outbox relay is already running" in second.output()
        first.signal(signal.SIGTERM)
        assert first.wait(10) == 0


@pytest.mark.postgres
def test_a_relay_paused_past_its_lease_does_not_send_what_it_claimed_ahead(log_dir: Path) -> None:
    """Relay A stops itself (SIGSTOP) right after its first batch, holding the batch it
    claimed ahead; its leases run out; relay B takes and publishes everything, every
    version; A resumes. A must not send the batch it had claimed ahead: it was claimed
    again by B, and sending it now would deliver an order's v1 after its v3. Duplicates
    are fine (at-least-once), an earlier version after a later one is not."""
    bulk_events(20, versions=3)
    expected = all_ids()
    with Receiver() as to_a, Receiver() as to_b:
        settings = {"OUTBOX_LEASE": 1.5, "OUTBOX_POLL_INTERVAL": 0.1}
        env_a = relay_env(to_a, **settings)
        env_b = relay_env(to_b, **settings)
        pausing = ("--batch-size", "5", "--publisher", "tests.relay_publishers.PausingPublisher")
        with relays(log_dir, 1, env_a, *pausing) as (a,):
            wait_until(lambda: is_stopped(a.proc.pid), 30, "relay A paused after a batch")
            tokens = set(
                OutboxEvent.objects.filter(lease_token__isnull=False).values_list(
                    "lease_token", flat=True
                )
            )
            assert len(tokens) == 2, "A holds the batch it sent and the one claimed ahead"
            assert to_a.count() == 5

            (log_dir / "b").mkdir()
            with relays(log_dir / "b", 1, env_b, "--batch-size", "5") as (b,):
                wait_until(
                    lambda: not OutboxEvent.objects.exclude(status="published").exists(),
                    60,
                    "B publishes everything once A's leases ran out",
                )
                assert set(to_b.ids()) == expected
                a.signal(signal.SIGCONT)
                # A writes back its two batches (both fenced off: B owns them now).
                wait_until(lambda: a.output().count("outbox batch") >= 2, 30, "A resumed")
                for relay in (a, b):
                    relay.signal(signal.SIGTERM)
                assert b.wait(10) == 0
            assert a.wait(10) == 0

        deliveries = sorted([*to_a.received, *to_b.received], key=lambda e: e["_received_at"])
    for order, versions in versions_by_order(deliveries).items():
        assert versions == sorted(versions), f"order {order} arrived as {versions}"
    assert to_a.count() == 5, "A sent the batch it had claimed ahead"
    assert "claimed again elsewhere; not sending them" in a.output()
