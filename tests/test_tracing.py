"""Trace context across the outbox (docs/operations.md, "Reading a trace"): recorded with
every event while a span is current, sent in the CloudEvent and as each publisher's native
headers, continued by a consumer; the relay's publish span linked to the recorded
contexts; and, without OpenTelemetry, nothing imported and nothing stored.

OpenTelemetry's SDK with an in-memory exporter (tests/tracing.py) stands in for a host's
tracing; the brokers and the receiver are the real ones.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import transaction
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from django_orders import services
from django_orders.models import OutboxEvent
from django_orders.outbox import record_event
from django_orders.outbox.cloudevents import to_cloudevent
from django_orders.outbox.relay import Relay
from django_orders.publishers.rabbitmq import RabbitMQPublisher
from django_orders.publishers.redis_streams import RedisStreamPublisher
from django_orders.publishers.webhook import WebhookPublisher
from tests import tracing
from tests.brokers import AMQP_URL, REDIS_URL, drain
from tests.receiver import Receiver
from tests.relay_publishers import FailingPublisher, RecordingPublisher
from tests.relay_runs import ROOT, database_env
from tests.tracing import W3C, continue_trace, finished, hex_ids, tracer

SECRET = "whsec_" + "dHJhY2luZy10ZXN0LXNlY3JldC0wMTIzNDU2Nzg5YWI="


@pytest.fixture(autouse=True)
def spans() -> Iterator[Any]:
    memory = tracing.exporter()
    memory.clear()
    yield memory
    memory.clear()


def traceparent_of(span: trace.Span) -> str:
    context = span.get_span_context()
    trace_id, span_id = hex_ids(context)
    return f"00-{trace_id}-{span_id}-{int(context.trace_flags):02x}"


# -- recording ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_event_recorded_under_a_span_carries_its_trace_context() -> None:
    with tracer().start_as_current_span("work") as span:
        order = services.create_order("shop-1")
        invoice = record_event(
            "com.example.invoice.issued",
            aggregate_type="invoice",
            aggregate_id=7,
            data={"total": 1},
            tenant_id="shop-1",
        )
    outside = services.create_order("shop-1")

    events = {e.aggregate_id: e for e in OutboxEvent.objects.all()}
    assert events[str(order.id)].extensions == {"traceparent": traceparent_of(span)}
    assert events["7"].extensions == invoice.extensions == {"traceparent": traceparent_of(span)}
    assert events[str(outside.id)].extensions == {}  # no span current: nothing stored


@pytest.mark.django_db
def test_tracestate_is_stored_too_and_a_given_traceparent_wins() -> None:
    upstream = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    parent = W3C.extract({"traceparent": upstream, "tracestate": "vendor=abc"})
    with tracer().start_as_current_span("work", context=parent) as span:
        services.create_order("shop-1")
        given = record_event(
            "com.example.x",
            aggregate_type="x",
            aggregate_id=1,
            data={},
            tenant_id="shop-1",
            extensions={"traceparent": upstream},
        )
    event = OutboxEvent.objects.get(aggregate_type="order")
    assert event.extensions == {"traceparent": traceparent_of(span), "tracestate": "vendor=abc"}
    assert given.extensions == {"traceparent": upstream}
    assert to_cloudevent(event)["traceparent"] == traceparent_of(span)


@pytest.mark.django_db
def test_an_invalid_span_stores_nothing() -> None:
    with trace.use_span(trace.INVALID_SPAN):
        order = services.create_order("shop-1")
    assert OutboxEvent.objects.get(aggregate_id=order.id).extensions == {}


@pytest.mark.django_db(transaction=True)  # the subprocess writes to the test database
def test_without_opentelemetry_nothing_is_imported_and_nothing_stored() -> None:
    """A process where OpenTelemetry cannot be imported records events and runs a relay
    without importing it (nor prometheus-client), and its events carry no trace context."""
    script = """
import sys
sys.modules["opentelemetry"] = None
sys.modules["prometheus_client"] = None
import django
django.setup()
from django.core.management import call_command
from django.db import connection
from django.test.utils import setup_test_environment
from django_orders import services
from django_orders.models import OutboxEvent
from django_orders.outbox import record_event
from django_orders.outbox.relay import Relay
from django_orders.publishers.log import LoggingPublisher
from django.db import transaction
with transaction.atomic():
    order = services.create_order("no-otel")
    record_event("com.example.x", aggregate_type="x", aggregate_id=1, data={}, tenant_id="no-otel")
    assert Relay(LoggingPublisher(), listen=False).run(once=True)
    events = list(OutboxEvent.objects.filter(tenant_id="no-otel"))
    assert [e.status for e in events] == ["published", "published"], events
    assert [e.extensions for e in events] == [{}, {}], events
    transaction.set_rollback(True)
loaded = sorted(m for m, v in sys.modules.items() if v is not None and
                m.split(".")[0] in ("opentelemetry", "prometheus_client"))
assert loaded == [], loaded
print("ok")
"""
    env = {
        **os.environ,
        **database_env(),
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PYTHONPATH": str(ROOT),
    }
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


# -- request → relay → consumer, on every shipped publisher -------------------------------


@pytest.fixture
def traced_server(settings: Any) -> None:
    """The live server runs every request in a server span (set before it starts)."""
    settings.MIDDLEWARE = ["tests.tracing.RequestSpanMiddleware", *settings.MIDDLEWARE]


def create_order_in_a_trace(port: int) -> tuple[str, str]:
    """POST /orders over real HTTP from inside a client span; the (trace id, span id) of
    the server span that handled it."""
    with tracer().start_as_current_span("client", kind=SpanKind.CLIENT) as client:
        headers: dict[str, str] = {}
        W3C.inject(headers)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            connection.request(
                "POST",
                "/orders",
                body=json.dumps({"totalCents": 100}),
                headers={
                    **headers,
                    "Content-Type": "application/json",
                    "X-Tenant-Id": "shop-1",
                    "Idempotency-Key": uuid.uuid4().hex,
                },
            )
            response = connection.getresponse()
            assert response.status == 201, response.read()
            response.read()
        finally:
            connection.close()
    (server,) = finished("POST /orders")
    assert server.parent is not None
    assert server.parent.span_id == client.get_span_context().span_id  # one trace
    return hex_ids(server.context)


def assert_continues(headers: Any, body: bytes, request: tuple[str, str]) -> None:
    """The message carries the request's context, natively and in the CloudEvent, and a
    consumer's span continues the request's trace."""
    trace_id, span_id = request
    native = {
        (k.decode() if isinstance(k, bytes) else k).lower(): (
            v.decode() if isinstance(v, bytes) else v
        )
        for k, v in headers.items()
    }
    assert native["traceparent"].split("-")[1:3] == [trace_id, span_id]
    assert json.loads(body)["traceparent"] == native["traceparent"]
    consumer = continue_trace(headers, "consume order.created")
    assert hex_ids(consumer.get_span_context())[0] == trace_id
    assert consumer.parent is not None
    assert format(consumer.parent.span_id, "016x") == span_id


def assert_linked(request: tuple[str, str]) -> None:
    """The relay's publish span is linked to the request's span."""
    (send,) = finished("outbox send")
    assert send.kind == SpanKind.PRODUCER
    assert send.parent is None
    assert [hex_ids(link.context) for link in send.links] == [request]
    assert send.attributes is not None
    assert send.attributes["messaging.batch.message_count"] == 1


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_webhook_carries_the_request_trace(traced_server: None, live_port: int) -> None:
    request = create_order_in_a_trace(live_port)
    with Receiver() as receiver:
        publisher = WebhookPublisher(url=receiver.url, secret=SECRET)
        assert Relay(publisher, listen=False).run(once=True)
        ((headers, body, status),) = receiver.requests
    assert status == 200
    assert_continues(headers, body, request)
    assert_linked(request)


@pytest.mark.slow
@pytest.mark.rabbitmq
@pytest.mark.django_db(transaction=True)
def test_rabbitmq_carries_the_request_trace(traced_server: None, live_port: int, amqp: Any) -> None:
    pytest.importorskip("pika")
    exchange = f"test.trace.{uuid.uuid4().hex}"
    channel = amqp.channel()
    channel.exchange_declare(exchange, exchange_type="topic", durable=True)
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(queue, exchange, routing_key="#")
    try:
        request = create_order_in_a_trace(live_port)
        publisher = RabbitMQPublisher(url=AMQP_URL, exchange=exchange)
        assert Relay(publisher, listen=False).run(once=True)
        ((_, properties, body),) = drain(channel, queue, 1)
    finally:
        channel.exchange_delete(exchange)
    assert_continues(properties.headers, body, request)
    assert_linked(request)


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_redis_carries_the_request_trace(
    traced_server: None, live_port: int, redis_client: Any
) -> None:
    stream = f"test.trace.{uuid.uuid4().hex}"
    try:
        request = create_order_in_a_trace(live_port)
        publisher = RedisStreamPublisher(url=REDIS_URL, stream=stream)
        assert Relay(publisher, listen=False).run(once=True)
        ((_, fields),) = redis_client.xrange(stream)
    finally:
        redis_client.delete(stream)
    assert_continues(
        {k: v for k, v in fields.items() if k in (b"traceparent", b"tracestate")},
        fields[b"event"],
        request,
    )
    assert_linked(request)


@pytest.mark.slow
@pytest.mark.kafka
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("mode", ["structured", "binary"])
def test_kafka_carries_the_request_trace(traced_server: None, live_port: int, mode: str) -> None:
    pytest.importorskip("confluent_kafka")
    from django_orders.publishers.kafka import KafkaPublisher
    from tests.kafka_broker import new_topic_name, read_topic, running_tansu

    with running_tansu() as broker:
        topic = new_topic_name()
        broker.create_topic(topic)
        request = create_order_in_a_trace(live_port)
        publisher = KafkaPublisher(bootstrap_servers=broker.bootstrap, topic=topic, mode=mode)
        try:
            assert Relay(publisher, listen=False).run(once=True)
        finally:
            publisher.close()
        (record,) = read_topic(broker.bootstrap, topic, 1)
    headers = dict(record.headers())
    native = {k: v for k, v in headers.items() if k in ("traceparent", "tracestate")}
    if mode == "binary":  # the CloudEvent is in the headers; the value is its data
        assert headers["ce_traceparent"] == headers["traceparent"]
        body = json.dumps({"traceparent": headers["ce_traceparent"].decode()}).encode()
    else:
        body = record.value()
    assert_continues(native, body, request)
    assert_linked(request)


@pytest.mark.slow
@pytest.mark.nats
@pytest.mark.django_db(transaction=True)
def test_nats_carries_the_request_trace(traced_server: None, live_port: int) -> None:
    pytest.importorskip("nats")
    from django_orders.publishers.nats_jetstream import NatsJetStreamPublisher
    from tests.nats_server import create_stream, delete_stream, machine_nats, stream_messages

    url = machine_nats()
    prefix = f"trace{uuid.uuid4().hex[:12]}"
    name = create_stream(url, [f"{prefix}.>"])
    try:
        request = create_order_in_a_trace(live_port)
        publisher = NatsJetStreamPublisher(servers=url, subject=f"{prefix}.{{type}}")
        try:
            assert Relay(publisher, listen=False).run(once=True)
        finally:
            publisher.close()
        (message,) = stream_messages(url, name)
    finally:
        delete_stream(url, name)
    native = {k: v for k, v in message.headers.items() if k in ("traceparent", "tracestate")}
    assert_continues(native, message.data, request)
    assert_linked(request)


@pytest.mark.django_db(transaction=True)
def test_a_batch_is_one_span_linked_to_each_events_trace() -> None:
    with tracer().start_as_current_span("a") as first:
        services.create_order("shop-1")
    services.create_order("shop-1")  # outside any trace: no link
    with tracer().start_as_current_span("b") as second, transaction.atomic():
        services.create_order("shop-2")
    for number, traceparent in enumerate(
        ["not a traceparent", "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"]
    ):
        # Given by a caller: published as given, never a link (nor a failed batch).
        record_event(
            "com.example.x",
            aggregate_type="x",
            aggregate_id=number,
            data={},
            tenant_id="shop-3",
            extensions={"traceparent": traceparent},
        )
    publisher = RecordingPublisher()
    assert Relay(publisher, listen=False).run(once=True)
    (send,) = finished("outbox send")
    assert {hex_ids(link.context) for link in send.links} == {
        hex_ids(first.get_span_context()),
        hex_ids(second.get_span_context()),
    }
    assert send.attributes is not None
    assert send.attributes["messaging.batch.message_count"] == 5
    assert send.attributes["django_orders.outbox.publisher"] == "RecordingPublisher"
    assert sorted(e.get("traceparent", "")[:3] for e in publisher.events) == [
        "",
        "00-",
        "00-",
        "ff-",
        "not",
    ]
    assert send.status.is_ok


@pytest.mark.django_db(transaction=True)
def test_a_failed_batch_span_says_so() -> None:
    services.create_order("shop-1")
    assert not Relay(FailingPublisher(), listen=False).run(once=True)
    (send,) = finished("outbox send")
    assert not send.status.is_ok
    assert send.attributes is not None
    assert send.attributes["django_orders.outbox.failed"] == 1
