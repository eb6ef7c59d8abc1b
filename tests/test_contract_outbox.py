"""docs/guide/publishers.md and docs/operations.md end to end: the relay command with the
shipped publishers and real services, where the narrower tests (test_relay*,
test_publishers_*) each see one side.

- what a consumer receives: every CloudEvent attribute, ``data`` as the order stood right
  after its change, the same id and bytes on a redelivery, a signature the official
  ``standardwebhooks`` verifier accepts, a document the CloudEvents SDK parses on every
  transport;
- ``--publisher`` / ``--publisher-options`` with the webhook, RabbitMQ and Redis publishers;
- a permanent webhook refusal parks the event at once, the admin's re-queue sends it again;
- publishing happens outside any transaction;
- a relay outlives a publisher that raises and a database that drops its connections;
- a relay SIGKILLed holding a lease: another takes over after the lease, not before.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import re
import signal
import threading
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import standardwebhooks
from cloudevents.core.bindings import http as http_binding
from cloudevents.core.bindings import rabbitmq as rabbitmq_binding
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.test import Client, override_settings
from django.utils import timezone

from django_orders import services
from django_orders.models import OutboxEvent
from django_orders.outbox.relay import Relay
from django_orders.publishers import PublishError
from tests.brokers import AMQP_URL, drain
from tests.cloudevent_samples import assert_sdk_event_is
from tests.orders_api import OrdersClient, failing_trigger
from tests.outbox_rows import bulk_events
from tests.receiver import Receiver, versions_by_order
from tests.relay_publishers import RecordingPublisher
from tests.relay_runs import relay_env, relay_once, relays
from tests.standard_webhooks_verifier import Verifier
from tests.tcp_proxy import TcpProxy
from tests.waiting import wait_until

SECRET = "whsec_" + base64.b64encode(b"contract-test-key-32-bytes-long!").decode()
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def webhook_once(receiver: Receiver) -> int:
    return relay_once(
        "django_orders.publishers.WebhookPublisher", url=receiver.url, secret=SECRET, timeout=5
    )


def api_lifecycle() -> list[dict[str, Any]]:
    """Create, confirm and close one order through the API; each answer's body."""
    api = OrdersClient()
    created = api.create({"metadata": {"ref": "A-1"}}).json()
    confirmed = api.confirm(created["id"], {"totalCents": 1250}).json()
    closed = api.close_order(created["id"]).json()
    return [created, confirmed, closed]


# -- what a consumer receives ----------------------------------------------------------


@pytest.mark.django_db
def test_each_event_carries_the_order_as_it_stood_right_after_its_change(
    receiver: Receiver,
) -> None:
    snapshots = api_lifecycle()

    assert webhook_once(receiver) == 0

    verifier = Verifier(SECRET)
    rows = {str(e.id): e for e in OutboxEvent.objects.all()}
    events = [verifier.verify(body, headers) for headers, body, _ in receiver.requests]
    assert [e["type"] for e in events] == ["order.created", "order.confirmed", "order.closed"]
    for event, snapshot, (headers, _, _) in zip(events, snapshots, receiver.requests, strict=True):
        row = rows[event["id"]]
        assert set(event) == {
            "specversion",
            "id",
            "source",
            "type",
            "subject",
            "time",
            "datacontenttype",
            "tenantid",
            "data",
        }
        assert event["specversion"] == "1.0"
        assert event["source"] == "/django-orders"
        assert event["subject"] == snapshot["id"]
        assert event["tenantid"] == "shop-1"
        assert event["datacontenttype"] == "application/json"
        assert RFC3339.match(event["time"])
        assert event["time"] == snapshot["updatedAt"]  # the instant of the change
        assert event["data"] == snapshot  # the API's representation right after it
        assert headers["webhook-id"] == event["id"] == str(row.id)
        assert headers["content-type"] == "application/cloudevents+json"


@pytest.mark.django_db
def test_a_consumer_verifies_with_standardwebhooks_and_parses_with_the_cloudevents_sdk(
    receiver: Receiver,
) -> None:
    """docs/guide/publishers.md, "Verifying webhooks on the receiving side", as written."""
    snapshots = api_lifecycle()

    assert webhook_once(receiver) == 0

    webhook = standardwebhooks.Webhook(SECRET)
    for (headers, body, _), snapshot in zip(receiver.requests, snapshots, strict=True):
        event = webhook.verify(body, headers)
        parsed = http_binding.from_http(http_binding.HTTPMessage(headers, body), JSONFormat())
        assert_sdk_event_is(parsed, event)
        assert parsed.get_data() == snapshot


@pytest.mark.django_db
def test_a_redelivery_after_a_failure_is_the_same_id_and_the_same_bytes(
    receiver: Receiver,
) -> None:
    order = services.create_order("shop-1", metadata={"note": "Grüße"})
    receiver.status = 503

    assert webhook_once(receiver) == 1
    event = OutboxEvent.objects.get(aggregate_id=order.id)
    assert (event.status, event.attempts) == ("pending", 1)
    assert event.available_at > event.created_at  # backoff, visible
    assert "503" in event.last_error

    receiver.status = 200
    OutboxEvent.objects.update(available_at=timezone.now())
    assert webhook_once(receiver) == 0

    (failed_headers, failed_body, _), (headers, body, _) = receiver.requests
    assert failed_headers["webhook-id"] == headers["webhook-id"] == str(event.id)
    assert failed_body == body  # consumers may hash the body, not only dedupe on the id
    assert Verifier(SECRET).verify(body, headers)["id"] == str(event.id)
    event.refresh_from_db()
    assert (event.status, event.attempts, event.last_error) == ("published", 2, "")


@pytest.mark.django_db
@pytest.mark.parametrize("status", [400, 404, 410, 422])
def test_a_permanent_webhook_refusal_is_dead_at_once(receiver: Receiver, status: int) -> None:
    services.create_order("shop-1")
    receiver.status = status
    assert webhook_once(receiver) == 1
    event = OutboxEvent.objects.get()
    assert (event.status, event.attempts) == ("dead", 1)
    assert f"webhook answered {status}" in event.last_error


@pytest.mark.django_db
@pytest.mark.parametrize("status", [408, 425, 429, 500, 503])
def test_a_try_again_later_webhook_answer_stays_pending(receiver: Receiver, status: int) -> None:
    services.create_order("shop-1")
    receiver.status, receiver.retry_after = status, "20"
    assert webhook_once(receiver) == 1
    event = OutboxEvent.objects.get()
    assert (event.status, event.attempts) == ("pending", 1)
    assert event.available_at >= timezone.now() + dt.timedelta(seconds=18)  # Retry-After


@pytest.mark.django_db
def test_re_queue_in_the_admin_delivers_the_dead_event_and_what_it_held_back(
    receiver: Receiver,
) -> None:
    snapshots = api_lifecycle()
    receiver.status = 410
    assert webhook_once(receiver) == 1
    dead = OutboxEvent.objects.get(status="dead")
    assert dead.aggregate_version == 1

    receiver.status = 200
    assert webhook_once(receiver) == 0
    assert receiver.count() == 0  # the dead event blocks its order

    User.objects.create_superuser("ops", "ops@example.com", "s3cret-pw")
    admin = Client()
    assert admin.login(username="ops", password="s3cret-pw")
    changelist = "/admin/django_orders/outboxevent/"
    page = admin.get(changelist, {"status__exact": "dead"})
    assert page.status_code == 200
    assert "requeue_events" in page.text
    response = admin.post(
        changelist,
        {"action": "requeue_events", "_selected_action": [str(dead.pk)]},
        follow=True,
    )
    assert response.status_code == 200
    assert "Re-queued 1 dead event" in response.text

    assert webhook_once(receiver) == 0
    assert [e["data"] for e in receiver.received] == snapshots


# -- the publisher options on the command line, real brokers ----------------------------


@pytest.mark.django_db
@pytest.mark.rabbitmq
def test_the_relay_command_publishes_to_rabbitmq(amqp: Any) -> None:
    url = AMQP_URL
    exchange = f"test.contract.{uuid.uuid4().hex}"
    channel = amqp.channel()
    try:
        snapshots = api_lifecycle()
        channel.exchange_declare(exchange, exchange_type="topic", durable=True)
        queue = channel.queue_declare("", exclusive=True).method.queue
        channel.queue_bind(queue, exchange, routing_key="order.*")

        assert (
            relay_once("django_orders.publishers.RabbitMQPublisher", url=url, exchange=exchange)
            == 0
        )

        messages = [
            (method.routing_key, properties, json.loads(body), body)
            for method, properties, body in drain(channel, queue, 3)
        ]
        assert [m[0] for m in messages] == ["order.created", "order.confirmed", "order.closed"]
        assert [m[2]["data"] for m in messages] == snapshots
        assert [m[1].message_id for m in messages] == [m[2]["id"] for m in messages]
        assert all(m[1].headers == {"tenantid": "shop-1"} for m in messages)
        assert not OutboxEvent.objects.exclude(status="published").exists()
        for _, properties, event, body in messages:  # as the CloudEvents SDK reads them
            message = rabbitmq_binding.RabbitMQMessage(
                properties.headers, properties.content_type, body
            )
            assert_sdk_event_is(rabbitmq_binding.from_rabbitmq(message, JSONFormat()), event)
    finally:
        channel.exchange_delete(exchange)


@pytest.mark.django_db
@pytest.mark.redis
def test_the_relay_command_publishes_to_a_redis_stream() -> None:
    redis = pytest.importorskip("redis")
    url = os.environ.get("ORDERS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis is not reachable: {exc!r}")
    stream = f"test.contract.{uuid.uuid4().hex}"
    try:
        snapshots = api_lifecycle()
        assert (
            relay_once("django_orders.publishers.RedisStreamPublisher", url=url, stream=stream) == 0
        )
        entries = [fields for _, fields in client.xrange(stream)]
        events = [json.loads(fields[b"event"]) for fields in entries]
        assert [e["data"] for e in events] == snapshots
        assert [f[b"id"].decode() for f in entries] == [e["id"] for e in events]
        assert [f[b"type"].decode() for f in entries] == [e["type"] for e in events]
        assert {f[b"tenantid"] for f in entries} == {b"shop-1"}
        for fields, event in zip(entries, events, strict=True):  # as the CloudEvents SDK reads
            assert_sdk_event_is(JSONFormat().read(CloudEvent, fields[b"event"]), event)
    finally:
        client.delete(stream)
        client.close()


# -- how the relay publishes -----------------------------------------------------------


class TransactionProbe(RecordingPublisher):
    """Records, for each publish, whether the relay's connection was inside a transaction."""

    def __init__(self) -> None:
        super().__init__()
        self.states: list[tuple[bool, bool, bool]] = []

    def publish(self, event: dict[str, Any]) -> None:
        raw = connection.connection  # the driver's connection the relay claims with
        if connection.vendor == "postgresql":
            # psycopg 3 and psycopg2 both: 0 is TRANSACTION_STATUS_IDLE (no transaction).
            open_transaction = int(raw.info.transaction_status) != 0
        else:
            open_transaction = bool(raw.in_transaction)
        self.states.append(
            (connection.in_atomic_block, open_transaction, connection.get_autocommit())
        )
        super().publish(event)


@pytest.mark.django_db(transaction=True)
def test_publishing_happens_outside_any_transaction() -> None:
    services.create_order("shop-1")
    services.create_order("shop-2")
    probe = TransactionProbe()

    assert Relay(probe, listen=False).run(once=True) is True

    assert len(probe.events) == 2
    assert probe.states == [(False, False, True)] * 2


class RaisesOnce(RecordingPublisher):
    """Raises something that is not a PublishError on its first batch, then works."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def publish_batch(self, events: Any) -> list[PublishError | None]:
        self.calls += 1
        if self.calls == 1:
            raise KeyError("a publisher bug")
        return super().publish_batch(events)


@pytest.mark.django_db(transaction=True)
def test_a_publisher_raising_unexpectedly_does_not_stop_the_relay_nor_lose_the_event() -> None:
    order = services.create_order("shop-1")
    publisher = RaisesOnce()
    relay = Relay(publisher, listen=False, poll_interval=0.05)
    outcome: list[object] = []

    def serve() -> None:
        try:
            outcome.append(relay.run())
        except BaseException as exc:  # pragma: no cover - what the test guards against
            outcome.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        # The first retry comes within a second (backoff window 1 s).
        wait_until(lambda: publisher.events, 15, "the retried publish")
        assert thread.is_alive()
    finally:
        relay.stop()
        thread.join(10)
    assert not thread.is_alive()
    assert outcome == [False]  # ran until stopped; one publish had failed
    event = OutboxEvent.objects.get(aggregate_id=order.id)
    assert (event.status, event.attempts) == ("published", 2)
    assert [e["id"] for e in publisher.events] == [str(event.id)]


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres
def test_a_failing_write_back_neither_stops_the_relay_nor_loses_events(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The write-back runs on its own thread; when it fails (here a trigger refuses every
    'published' update) the relay logs the database error and keeps serving, the events
    stay pending under their lease, and once writes work again every one is published
    (at-least-once: sent again after the lease), each order in version order."""
    bulk_events(10, versions=2)
    expected = {str(pk) for pk in OutboxEvent.objects.values_list("id", flat=True)}
    publisher = RecordingPublisher()
    relay = Relay(publisher, batch_size=5, listen=False, poll_interval=0.1)
    thread = threading.Thread(target=lambda: (relay.run(), connection.close()))
    with override_settings(DJANGO_ORDERS={"OUTBOX_LEASE": 1}):
        try:
            with (
                caplog.at_level("ERROR", logger="django_orders.relay"),
                failing_trigger("django_orders_outbox_event", "UPDATE", "NEW.status = 'published'"),
            ):
                thread.start()
                wait_until(
                    lambda: any("database error" in r.getMessage() for r in caplog.records),
                    15,
                    "the failed write-back logged",
                )
                assert thread.is_alive()
                assert not OutboxEvent.objects.filter(status="published").exists()
            wait_until(
                lambda: not OutboxEvent.objects.exclude(status="published").exists(),
                30,
                "everything published once writes work again",
            )
            assert thread.is_alive()
        finally:
            relay.stop()
            thread.join(10)
    assert {event["id"] for event in publisher.events} == expected
    assert all(seen == sorted(seen) for seen in versions_by_order(publisher.events).values())


# -- processes: a database that drops connections, a lease that runs out ----------------


def asleep(output: str) -> bool:
    """The relay found nothing due and waits (its debug lines say so)."""
    waits = output.count("Nothing due")
    return waits > 0 and waits == output.count("Woken by") + 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.parametrize("driver", ["default", "psycopg2"])
def test_a_relay_outlives_the_database_dropping_its_connections(
    receiver: Receiver, log_dir: Path, driver: str
) -> None:
    """close_old_connections() each loop and a LISTEN that reconnects: after every
    connection of the relay was terminated, it is still woken by NOTIFY (the poll
    interval is 30 s) and publishes."""
    env = relay_env(receiver, OUTBOX_POLL_INTERVAL=30)
    services.create_order("shop-1")
    with relays(log_dir, 1, env, driver=driver) as (relay,):
        wait_until(lambda: receiver.count() == 1, 20, "the first event")
        wait_until(lambda: asleep(relay.output()), 10, "an idle relay")
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            assert cursor.fetchone()[0] >= 2  # the claim and the LISTEN connections
        wait_until(lambda: "LISTEN connection lost" in relay.output(), 10, "the loss noticed")
        wait_until(lambda: "works again" in relay.output(), 10, "LISTEN again, before a poll")
        wait_until(lambda: asleep(relay.output()), 10, "idle again")

        services.create_order("shop-1")  # NOTIFY: no 30 s poll needed
        wait_until(lambda: receiver.count() == 2, 10, "a publish after the reconnect")
        relay.signal(signal.SIGTERM)
        assert relay.wait(10) == 0, relay.output()
    assert not OutboxEvent.objects.exclude(status="published").exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres
@pytest.mark.slow
def test_a_killed_relays_lease_passes_to_another_relay_when_it_runs_out(
    receiver: Receiver, log_dir: Path
) -> None:
    bulk_events(6, versions=1)
    receiver.delay = 1.0
    # A lease long enough that the second relay is up well before it runs out.
    env = relay_env(receiver, OUTBOX_LEASE=6, OUTBOX_POLL_INTERVAL=0.1)

    with relays(log_dir, 1, env, "--batch-size", "6") as (first,):
        wait_until(lambda: receiver.count() >= 1, 30, "the first relay publishing")
        first.kill()  # SIGKILL: no release, no write-back
    leased = dict(
        OutboxEvent.objects.filter(lease_token__isnull=False).values_list("id", "leased_until")
    )
    assert leased, "the killed relay held no lease"
    expires = min(leased.values()).timestamp()

    receiver.delay = 0
    (log_dir / "second").mkdir()
    with relays(log_dir / "second", 1, env) as (second,):
        wait_until(
            lambda: not OutboxEvent.objects.exclude(status="published").exists(),
            30,
            "everything published",
        )
        second.signal(signal.SIGTERM)
        assert second.wait(10) == 0
    pid = str(second.proc.pid)
    taken_over = [e for e in receiver.received if e["_relay_pid"] == pid]
    assert {uuid.UUID(e["id"]) for e in taken_over} >= set(leased)
    for event in taken_over:
        if uuid.UUID(event["id"]) in leased:
            # Not before the lease ran out (no duplicate while it was valid)…
            assert event["_received_wall"] >= expires - 0.05
            # …and soon after it did (OUTBOX_LEASE bounds the delay, not a restart).
            assert event["_received_wall"] <= expires + 20


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres
@pytest.mark.slow
def test_a_relay_rides_out_a_database_outage(receiver: Receiver, log_dir: Path) -> None:
    """The database goes away for a while (connections dropped, new ones refused): the
    relay keeps running, retries every poll interval, and delivers once it is back."""
    settings_dict = connection.settings_dict
    proxy = TcpProxy((settings_dict["HOST"] or "127.0.0.1", int(settings_dict["PORT"] or 5432)))
    env = relay_env(receiver, OUTBOX_POLL_INTERVAL=0.2)
    env["DATABASE_URL"] = re.sub(r":\d+/", f":{proxy.port}/", env["DATABASE_URL"])
    try:
        services.create_order("shop-1")
        with relays(log_dir, 1, env) as (relay,):
            # Delivered and written back (the write-back runs behind the publish): cut
            # before that, the event would wait out its lease and be published again.
            wait_until(
                lambda: (
                    receiver.count() == 1
                    and not OutboxEvent.objects.exclude(status="published").exists()
                ),
                20,
                "the first event",
            )
            proxy.accepting = False
            proxy.cut()
            wait_until(lambda: "database error" in relay.output(), 10, "the outage noticed")
            services.create_order("shop-1")  # written while the relay cannot see the database
            errors = relay.output().count("database error")
            wait_until(lambda: relay.output().count("database error") > errors, 10, "a retry")
            assert relay.proc.poll() is None
            assert receiver.count() == 1

            proxy.accepting = True
            wait_until(lambda: receiver.count() == 2, 20, "delivery after the outage")
            relay.signal(signal.SIGTERM)
            assert relay.wait(10) == 0, relay.output()
    finally:
        proxy.close()
    assert not OutboxEvent.objects.exclude(status="published").exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.rabbitmq
@pytest.mark.slow
def test_the_broker_refuses_for_a_while_then_recovers(amqp: Any) -> None:
    """RabbitMQ goes away under a running relay: attempts and backoff show, nothing goes
    dead, and once the broker is back every event arrives, in order per order."""
    from django_orders.publishers import RabbitMQPublisher

    url = AMQP_URL
    parts = urlsplit(url)
    proxy = TcpProxy((parts.hostname or "127.0.0.1", parts.port or 5672))
    exchange = f"test.contract.{uuid.uuid4().hex}"
    channel = amqp.channel()
    channel.exchange_declare(exchange, exchange_type="topic", durable=True)
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(queue, exchange, routing_key="#")
    proxied = url.replace(f":{parts.port or 5672}/", f":{proxy.port}/")
    publisher = RabbitMQPublisher(url=proxied, exchange=exchange, timeout=2)
    relay = Relay(publisher, listen=False, poll_interval=0.1)
    thread = threading.Thread(target=lambda: (relay.run(), connection.close()))
    try:
        with override_settings(DJANGO_ORDERS={"OUTBOX_BACKOFF_MAX": 1}):
            proxy.accepting = False
            orders = [services.create_order("shop-1") for _ in range(5)]
            thread.start()
            wait_until(
                lambda: OutboxEvent.objects.filter(attempts__gte=3).count() == 5,
                30,
                "repeated attempts while the broker is away",
            )
            assert not OutboxEvent.objects.exclude(status="pending").exists()
            assert "RabbitMQ unavailable" in OutboxEvent.objects.first().last_error  # type: ignore[union-attr]
            for order in orders:  # their later events, written during the outage
                with transaction.atomic():
                    services.confirm_order(
                        services.get_order_for_update("shop-1", order.id), total_cents=10
                    )

            proxy.accepting = True
            wait_until(
                lambda: not OutboxEvent.objects.exclude(status="published").exists(),
                30,
                "everything published after the outage",
            )
    finally:
        relay.stop()
        thread.join(15)
        proxy.close()
    received = [json.loads(body) for _, _, body in drain(channel, queue, 10, timeout=3)]
    channel.exchange_delete(exchange)
    assert versions_by_order(received) == {str(order.id): [1, 2] for order in orders}


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres
@pytest.mark.rabbitmq
def test_rabbitmq_with_two_batches_in_flight_keeps_order_and_sends_each_event_once(
    amqp: Any,
) -> None:
    """Through the relay against the real broker: the publisher really has two batches
    in flight, every event arrives once, and each order's events in version order."""
    from django_orders.publishers import RabbitMQPublisher

    exchange = f"test.contract.{uuid.uuid4().hex}"
    channel = amqp.channel()
    channel.exchange_declare(exchange, exchange_type="topic", durable=True)
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(queue, exchange, routing_key="#")
    bulk_events(60, versions=3)
    publisher = RabbitMQPublisher(url=AMQP_URL, exchange=exchange)
    start_batch, in_flight, most = publisher.start_batch, [0], [0]

    def counting_start_batch(events: Any) -> Any:
        handle = start_batch(events)
        in_flight[0] += 1
        most[0] = max(most[0], in_flight[0])
        wait = handle.wait

        def counted_wait() -> Any:
            in_flight[0] -= 1
            return wait()

        handle.wait = counted_wait
        return handle

    publisher.start_batch = counting_start_batch  # type: ignore[method-assign]
    try:
        assert Relay(publisher, batch_size=10, listen=False).run(once=True) is True
        received = [json.loads(body) for _, _, body in drain(channel, queue, 180)]
    finally:
        channel.exchange_delete(exchange)
    assert most[0] == 2
    assert len({event["id"] for event in received}) == len(received) == 180
    assert all(seen == [1, 2, 3] for seen in versions_by_order(received).values())
    assert not OutboxEvent.objects.exclude(status="published").exists()
