"""Recording events (django_orders/outbox/recording.py; docs/guide/extending.md): the host's
own aggregates through ``record_event()``, and every event shaped by ``EVENT_TYPE_PREFIX``
and ``EVENT_ENRICHERS`` when it is written.

Host events go out through the same relay with the same guarantees as the package's order
events: in the transaction or not at all, in order per aggregate even when two
transactions record events of one aggregate at once, through every shipped publisher.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from typing import Any

import pytest
from django.db import IntegrityError, connection, transaction
from django.test import override_settings

from django_orders import services
from django_orders.models import OutboxEvent, OutboxSequence
from django_orders.outbox import record_event
from django_orders.outbox.cloudevents import to_cloudevent
from django_orders.outbox.maintenance import outbox_status
from django_orders.outbox.relay import Relay
from django_orders.tenancy import tenant_context
from tests.brokers import REDIS_URL, drain
from tests.receiver import Receiver
from tests.relay_publishers import RecordingPublisher
from tests.relay_runs import relay_once

pytestmark = pytest.mark.django_db


def invoice_issued(invoice: str = "INV-1", **kwargs: Any) -> OutboxEvent:
    kwargs.setdefault("tenant_id", "shop-1")
    return record_event(
        "com.example.invoice.issued",
        aggregate_type="invoice",
        aggregate_id=invoice,
        data={"invoice": str(invoice), "totalCents": 1250},
        **kwargs,
    )


def published(publisher: RecordingPublisher) -> list[tuple[str, str, int]]:
    return [(e["type"], e["subject"], e["data"].get("version", 0)) for e in publisher.events]


# -- record_event ------------------------------------------------------------------------


def test_a_host_event_is_an_outbox_row_the_relay_publishes_as_a_cloudevent() -> None:
    event = invoice_issued(extensions={"correlationid": "c-1"})

    row = OutboxEvent.objects.get(pk=event.pk)
    assert (row.tenant_id, row.aggregate_type, row.aggregate_id, row.aggregate_version) == (
        "shop-1",
        "invoice",
        "INV-1",
        1,
    )
    publisher = RecordingPublisher()
    assert Relay(publisher, listen=False).run(once=True) is True
    (sent,) = publisher.events
    assert sent == to_cloudevent(row)
    assert (sent["type"], sent["subject"], sent["tenantid"]) == (
        "com.example.invoice.issued",
        "INV-1",
        "shop-1",
    )
    assert sent["correlationid"] == "c-1"
    assert sent["data"] == {"invoice": "INV-1", "totalCents": 1250}
    assert list(sent)[-1] == "data"


def test_versions_count_per_aggregate_tenant_and_type() -> None:
    versions = [invoice_issued("INV-1").aggregate_version for _ in range(3)]
    assert versions == [1, 2, 3]
    assert invoice_issued("INV-2").aggregate_version == 1
    assert invoice_issued("INV-1", tenant_id="shop-2").aggregate_version == 1
    assert (
        record_event(
            "payment.captured",
            aggregate_type="payment",
            aggregate_id="INV-1",
            data={},
            tenant_id="shop-1",
        ).aggregate_version
        == 1
    )


def test_any_id_type_is_the_same_aggregate_as_its_text() -> None:
    key = uuid.uuid4()
    first = invoice_issued(key)  # type: ignore[arg-type]
    second = invoice_issued(str(key))
    assert (first.aggregate_id, second.aggregate_version) == (str(key), 2)
    assert invoice_issued(42).aggregate_id == "42"  # type: ignore[arg-type]


def test_an_explicit_version_is_the_hosts_own() -> None:
    assert invoice_issued(version=7).aggregate_version == 7
    assert not OutboxSequence.objects.exists()  # no counter for it
    with pytest.raises(IntegrityError), transaction.atomic():
        invoice_issued(version=7)  # one event per version of an aggregate


def test_the_tenant_defaults_to_the_current_one() -> None:
    with tenant_context("shop-9"):
        event = record_event("x.happened", aggregate_type="x", aggregate_id=1, data={})
    assert event.tenant_id == "shop-9"
    with pytest.raises(ValueError, match="needs a tenant_id"):
        record_event("x.happened", aggregate_type="x", aggregate_id=1, data={})


def test_the_event_is_part_of_the_callers_transaction() -> None:
    def change_that_fails() -> None:
        with transaction.atomic():
            invoice_issued()
            raise RuntimeError("the change failed")

    with pytest.raises(RuntimeError):
        change_that_fails()
    assert not OutboxEvent.objects.exists()
    assert not OutboxSequence.objects.exists()  # the counter rolled back too
    assert invoice_issued().aggregate_version == 1


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"aggregate_type": "order"}, "is the package's own orders"),
        ({"aggregate_type": ""}, "aggregate_type must be a non-empty string"),
        ({"aggregate_type": "x" * 65}, "at most 64"),
        ({"aggregate_id": "x" * 129}, "at most 128"),
        ({"aggregate_id": "a\x00b"}, "without NUL"),
        ({"type": ""}, "type must be"),
        ({"data": ["not", "an", "object"]}, "data must be a JSON object"),
        ({"version": 0}, "version must be 1 or more"),
        ({"version": True}, "version must be an integer"),
        ({"extensions": {"Correlation-Id": "x"}}, "lower-case letters or digits"),
        ({"extensions": {"averyveryverylongname1": "x"}}, "lower-case letters or digits"),
        ({"extensions": {"subject": "x"}}, "already has"),
        ({"extensions": {"tenantid": "x"}}, "already has"),
        ({"extensions": {"note": 1.5}}, "string (without NUL), an integer or a boolean"),
        ({"extensions": {"note": "a\x00"}}, "string (without NUL)"),
    ],
)
def test_what_the_outbox_cannot_hold_is_refused(kwargs: dict[str, Any], says: str) -> None:
    arguments: dict[str, Any] = {
        "aggregate_type": "invoice",
        "aggregate_id": "INV-1",
        "data": {},
        "tenant_id": "shop-1",
        **kwargs,
    }
    event_type = arguments.pop("type", "invoice.issued")
    with pytest.raises(ValueError, match=re.escape(says)):
        record_event(event_type, **arguments)
    assert not OutboxEvent.objects.exists()


def test_host_events_are_counted_and_held_like_order_events() -> None:
    invoice_issued("INV-1")
    invoice_issued("INV-1")
    OutboxEvent.objects.filter(aggregate_version=1).update(status="dead")
    publisher = RecordingPublisher()
    assert Relay(publisher, listen=False).run(once=True) is True
    assert publisher.events == []  # v2 waits behind its dead v1
    (row,) = outbox_status()
    assert (row["tenant_id"], row["dead"]) == ("shop-1", 1)


# -- in order per aggregate, whatever the timing ----------------------------------------


@pytest.mark.django_db(transaction=True)
def test_two_transactions_recording_one_aggregate_are_published_in_commit_order() -> None:
    """The second transaction's ``record_event`` waits for the first one to end, then takes
    the next version: versions, and so publishing, follow commit order."""
    first_recorded = threading.Event()
    release_first = threading.Event()
    second_returned = threading.Event()
    order: list[str] = []
    errors: list[BaseException] = []

    def first() -> None:
        try:
            with transaction.atomic():
                record_event(
                    "invoice.line_added",
                    aggregate_type="invoice",
                    aggregate_id="INV-7",
                    data={"by": "first"},
                    tenant_id="shop-1",
                )
                first_recorded.set()
                assert release_first.wait(30)
                order.append("first")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    def second() -> None:
        try:
            assert first_recorded.wait(30)
            with transaction.atomic():
                record_event(
                    "invoice.line_added",
                    aggregate_type="invoice",
                    aggregate_id="INV-7",
                    data={"by": "second"},
                    tenant_id="shop-1",
                )
                second_returned.set()
                order.append("second")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    assert first_recorded.wait(30)
    # While the first transaction is open, the second cannot take a version.
    assert not second_returned.wait(1.0)
    release_first.set()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    assert order == ["first", "second"]

    rows = OutboxEvent.objects.filter(aggregate_id="INV-7").order_by("aggregate_version")
    assert [(row.aggregate_version, row.payload["by"]) for row in rows] == [
        (1, "first"),
        (2, "second"),
    ]
    publisher = RecordingPublisher()
    assert Relay(publisher, listen=False).run(once=True) is True
    assert [e["data"]["by"] for e in publisher.events] == ["first", "second"]


# -- EVENT_TYPE_PREFIX and EVENT_ENRICHERS ----------------------------------------------


def correlate(event: OutboxEvent) -> None:
    """An enricher: a correlation id on every event, and the time zone in order data."""
    event.extensions["correlationid"] = "corr-42"
    if event.aggregate_type == "order":
        event.payload["region"] = "eu"


def break_the_envelope(event: OutboxEvent) -> None:
    event.extensions["id"] = "mine"


def test_the_package_events_keep_their_types_by_default() -> None:
    services.create_order("shop-1")
    assert OutboxEvent.objects.get().type == "order.created"


@pytest.mark.parametrize("prefix", ["com.example", "com.example."])
def test_a_type_prefix_names_the_package_events_in_reverse_dns(prefix: str) -> None:
    with override_settings(DJANGO_ORDERS={"EVENT_TYPE_PREFIX": prefix}):
        order = services.create_order("shop-1")
        invoice_issued()
    types = set(OutboxEvent.objects.values_list("type", flat=True))
    assert types == {"com.example.order.created", "com.example.invoice.issued"}
    assert OutboxEvent.objects.get(aggregate_id=order.id).type == "com.example.order.created"


@override_settings(DJANGO_ORDERS={"EVENT_ENRICHERS": ["tests.test_outbox_recording.correlate"]})
def test_enrichers_shape_every_event_when_it_is_written() -> None:
    order = services.create_order("shop-1")
    invoice_issued()
    publisher = RecordingPublisher()
    assert Relay(publisher, listen=False).run(once=True) is True
    assert {e["correlationid"] for e in publisher.events} == {"corr-42"}
    order_event = next(e for e in publisher.events if e["type"] == "order.created")
    assert order_event["data"] == {**order.to_dict(), "region": "eu"}
    invoice_event = next(e for e in publisher.events if e["type"] != "order.created")
    assert "region" not in invoice_event["data"]


@override_settings(
    DJANGO_ORDERS={"EVENT_ENRICHERS": ["tests.test_outbox_recording.break_the_envelope"]}
)
def test_an_enricher_cannot_overwrite_the_envelope() -> None:
    refused = pytest.raises(ValueError, match="'id' is an attribute the CloudEvent already has")
    with refused, transaction.atomic():  # the enricher runs inside the caller's transaction
        invoice_issued()
    assert not OutboxEvent.objects.exists()


# -- through every shipped publisher, beside order events -------------------------------


def lifecycle_and_invoices() -> set[str]:
    """An order created, confirmed, closed and two events of an invoice; their ids."""
    order = services.create_order("shop-1")
    with transaction.atomic():
        services.confirm_order(services.get_order_for_update("shop-1", order.id), total_cents=5)
    with transaction.atomic():
        services.close_order(services.get_order_for_update("shop-1", order.id))
    invoice_issued("INV-9")
    record_event(
        "com.example.invoice.paid",
        aggregate_type="invoice",
        aggregate_id="INV-9",
        data={"invoice": "INV-9"},
        tenant_id="shop-1",
    )
    return {str(pk) for pk in OutboxEvent.objects.values_list("id", flat=True)}


def assert_in_order(events: list[dict[str, Any]]) -> None:
    types = [e["type"] for e in events]
    assert types.index("order.created") < types.index("order.confirmed")
    assert types.index("order.confirmed") < types.index("order.closed")
    assert types.index("com.example.invoice.issued") < types.index("com.example.invoice.paid")


def test_host_events_go_out_through_the_webhook_publisher(receiver: Receiver) -> None:
    expected = lifecycle_and_invoices()
    secret = "whsec_" + "a2V5LWZvci1ob3N0LWV2ZW50cy10ZXN0cw=="
    options = {"url": receiver.url, "secret": secret, "timeout": 5}
    assert relay_once("django_orders.publishers.WebhookPublisher", **options) == 0
    assert set(receiver.ids()) == expected
    assert_in_order(receiver.received)


@pytest.mark.rabbitmq
def test_host_events_go_out_through_the_rabbitmq_publisher(amqp: Any) -> None:
    from tests.brokers import AMQP_URL

    expected = lifecycle_and_invoices()
    exchange = f"test.host.{uuid.uuid4().hex}"
    channel = amqp.channel()
    try:
        channel.exchange_declare(exchange, exchange_type="topic", durable=True)
        queue = channel.queue_declare("", exclusive=True).method.queue
        channel.queue_bind(queue, exchange, routing_key="#")
        options = {"url": AMQP_URL, "exchange": exchange}
        assert relay_once("django_orders.publishers.RabbitMQPublisher", **options) == 0
        events = [json.loads(body) for _, _, body in drain(channel, queue, len(expected))]
    finally:
        channel.exchange_delete(exchange)
    assert {e["id"] for e in events} == expected
    assert_in_order(events)


@pytest.mark.redis
def test_host_events_go_out_through_the_redis_publisher(redis_client: Any) -> None:
    expected = lifecycle_and_invoices()
    stream = f"test.host.{uuid.uuid4().hex}"
    try:
        options = {"url": REDIS_URL, "stream": stream}
        assert relay_once("django_orders.publishers.RedisStreamPublisher", **options) == 0
        events = [json.loads(fields[b"event"]) for _, fields in redis_client.xrange(stream)]
    finally:
        redis_client.delete(stream)
    assert {e["id"] for e in events} == expected
    assert_in_order(events)


@pytest.mark.kafka
def test_host_events_go_out_through_the_kafka_publisher() -> None:
    pytest.importorskip("confluent_kafka")
    from tests.kafka_broker import new_topic_name, read_topic, running_tansu

    expected = lifecycle_and_invoices()
    with running_tansu() as broker:
        topic = new_topic_name()
        broker.create_topic(topic)
        options = {"bootstrap_servers": broker.bootstrap, "topic": topic}
        assert relay_once("django_orders.publishers.KafkaPublisher", **options) == 0
        records = read_topic(broker.bootstrap, topic, len(expected))
    events = [json.loads(record.value()) for record in records]
    assert {e["id"] for e in events} == expected
    # Kafka keeps order per key (the aggregate), not across partitions.
    types = [e["type"] for e in events]
    assert [t for t in types if t.startswith("order.")] == [
        "order.created",
        "order.confirmed",
        "order.closed",
    ]
    invoice = [t for t in types if t.startswith("com.example.invoice.")]
    assert invoice.index("com.example.invoice.issued") < invoice.index("com.example.invoice.paid")


@pytest.mark.nats
def test_host_events_go_out_through_the_nats_publisher() -> None:
    pytest.importorskip("nats")
    from tests.nats_server import create_stream, delete_stream, machine_nats, stream_messages

    url = machine_nats()
    expected = lifecycle_and_invoices()
    prefix = f"testhost{uuid.uuid4().hex[:12]}"
    name = create_stream(url, [f"{prefix}.>"])
    try:
        options = {"servers": url, "subject": f"{prefix}.{{type}}"}
        assert relay_once("django_orders.publishers.NatsJetStreamPublisher", **options) == 0
        events = [json.loads(message.data) for message in stream_messages(url, name)]
    finally:
        delete_stream(url, name)
    assert {e["id"] for e in events} == expected
    assert_in_order(events)
