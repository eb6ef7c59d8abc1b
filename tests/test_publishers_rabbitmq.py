"""docs/guide/publishers.md: the RabbitMQ publisher against a real broker.

Needs RabbitMQ on 127.0.0.1:5672 as guest/guest (``ORDERS_TEST_AMQP_URL`` overrides);
skipped with a reason when it does not answer. Every test uses its own exchange and
queues (uuid names) and deletes them. Connection loss is produced by a TCP proxy between
the publisher and the broker, which the test can pause or cut.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.core.exceptions import ImproperlyConfigured

from django_orders.cloudevents import serialize
from django_orders.publishers import PublishError, RabbitMQPublisher
from tests.brokers import drain
from tests.cloudevent_samples import sample_batch, sample_cloudevent
from tests.misbehaving_peers import SilentPeer
from tests.tcp_proxy import TcpProxy
from tests.waiting import wait_until

pika = pytest.importorskip("pika")

pytestmark = pytest.mark.rabbitmq

AMQP_URL = os.environ.get("ORDERS_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")


def _broker_address() -> tuple[str, int]:
    parts = urlsplit(AMQP_URL)
    return parts.hostname or "127.0.0.1", parts.port or 5672


@pytest.fixture(scope="module")
def broker() -> tuple[str, int]:
    address = _broker_address()
    try:
        socket.create_connection(address, timeout=1).close()
    except OSError as exc:
        pytest.skip(
            f"RabbitMQ is not reachable at {address[0]}:{address[1]} ({exc}); "
            "`scripts/ensure-services.sh rabbitmq` starts it"
        )
    return address


@pytest.fixture(autouse=True)
def no_error_of_ours_is_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Whatever the broker does, the publisher's I/O loop never crashes (it would log
    "RabbitMQ I/O loop crashed"): pika's own error lines are pika's business."""
    yield
    ours = [r for r in caplog.get_records("call") if r.name.startswith("django_orders")]
    assert [r.getMessage() for r in ours if r.levelno >= logging.ERROR] == []


@pytest.fixture
def amqp(broker: tuple[str, int]) -> Iterator[Any]:
    """A blocking channel of the test's own, for declaring, inspecting and cleaning up."""
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        yield connection.channel()
    finally:
        connection.close()


@pytest.fixture
def exchange(amqp: Any) -> Iterator[str]:
    name = f"test.orders.{uuid.uuid4().hex}"
    yield name
    channel = amqp.connection.channel()
    channel.exchange_delete(name)
    channel.close()


@pytest.fixture
def bind_queue(amqp: Any, exchange: str) -> Iterator[Callable[[str], str]]:
    """Declare the exchange as a consumer would, and a queue bound with a routing key."""
    queues: list[str] = []

    def bind(routing_key: str = "#") -> str:
        amqp.exchange_declare(exchange, exchange_type="topic", durable=True)
        queue = amqp.queue_declare(f"test.q.{uuid.uuid4().hex}", exclusive=True).method.queue
        amqp.queue_bind(queue, exchange, routing_key=routing_key)
        queues.append(queue)
        return queue

    yield bind
    for queue in queues:
        amqp.queue_delete(queue)


@pytest.fixture
def make_publisher(broker: tuple[str, int]) -> Iterator[Callable[..., RabbitMQPublisher]]:
    made: list[RabbitMQPublisher] = []

    def make(**options: Any) -> RabbitMQPublisher:
        options.setdefault("url", AMQP_URL)
        publisher = RabbitMQPublisher(**options)
        made.append(publisher)
        return publisher

    yield make
    for publisher in made:
        publisher.close()


# --- what reaches the broker -------------------------------------------------------------


def test_a_message_arrives_with_all_properties(
    make_publisher: Any, exchange: str, bind_queue: Any, amqp: Any
) -> None:
    queue = bind_queue("#")
    event = sample_cloudevent("order.confirmed", tenant="shop-9", total_cents=500)

    assert make_publisher(exchange=exchange).publish_batch([event]) == [None]

    ((method, properties, body),) = drain(amqp, queue, 1)
    assert method.exchange == exchange
    assert method.routing_key == "order.confirmed"
    assert properties.content_type == "application/cloudevents+json"
    assert properties.delivery_mode == 2
    assert properties.message_id == event["id"]
    assert properties.headers == {"tenantid": "shop-9"}
    assert body == serialize(event)
    assert json.loads(body)["tenantid"] == "shop-9"


def test_the_exchange_is_declared_as_a_durable_topic_exchange(
    make_publisher: Any, exchange: str, amqp: Any
) -> None:
    make_publisher(exchange=exchange).publish_batch([sample_cloudevent()])

    # Re-declaring with the same properties is accepted; with others the broker refuses.
    amqp.exchange_declare(exchange, exchange_type="topic", durable=True, passive=False)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as excinfo:
        amqp.exchange_declare(exchange, exchange_type="topic", durable=False)
    assert excinfo.value.reply_code == 406


def test_the_routing_key_is_the_event_type(
    make_publisher: Any, exchange: str, bind_queue: Any, amqp: Any
) -> None:
    closed_only = bind_queue("order.closed")
    everything = bind_queue("order.*")
    events = [sample_cloudevent(t) for t in ("order.created", "order.confirmed", "order.closed")]

    assert make_publisher(exchange=exchange).publish_batch(events) == [None] * 3

    assert [m[0].routing_key for m in drain(amqp, closed_only, 1)] == ["order.closed"]
    assert [m[0].routing_key for m in drain(amqp, everything, 3)] == [
        "order.created",
        "order.confirmed",
        "order.closed",
    ]


def test_a_large_batch_is_confirmed_and_arrives_in_order(
    make_publisher: Any, exchange: str, bind_queue: Any, amqp: Any
) -> None:
    queue = bind_queue("#")
    events = sample_batch(500)
    publisher = make_publisher(exchange=exchange)

    assert publisher.publish_batch(events[:250]) == [None] * 250
    assert publisher.publish_batch(events[250:]) == [None] * 250

    assert [m[1].message_id for m in drain(amqp, queue, 500)] == [e["id"] for e in events]


def test_two_batches_in_flight_are_each_confirmed_and_arrive_in_order(
    make_publisher: Any, exchange: str, bind_queue: Any, amqp: Any
) -> None:
    """``start_batch`` writes a batch without waiting for the confirms of the one before
    (``max_batches_in_flight = 2``); each handle answers for its own messages."""
    queue = bind_queue("#")
    events = sample_batch(400)
    publisher = make_publisher(exchange=exchange)
    assert publisher.max_batches_in_flight == 2

    first = publisher.start_batch(events[:200])
    second = publisher.start_batch(events[200:])
    assert second.wait() == [None] * 200
    assert first.wait() == [None] * 200

    assert [m[1].message_id for m in drain(amqp, queue, 400)] == [e["id"] for e in events]


# --- failures ----------------------------------------------------------------------------


def test_an_unroutable_message_is_a_failed_publish(make_publisher: Any, exchange: str) -> None:
    (error,) = make_publisher(exchange=exchange).publish_batch([sample_cloudevent()])

    assert isinstance(error, PublishError)
    assert not error.permanent  # a queue may be bound later; the relay retries
    assert "unroutable" in str(error)
    assert "order.created" in str(error)


def test_only_the_unroutable_messages_of_a_batch_fail(
    make_publisher: Any, exchange: str, bind_queue: Any, amqp: Any
) -> None:
    queue = bind_queue("order.created")
    events = [sample_cloudevent(t) for t in ["order.created", "order.closed"] * 5]

    results = make_publisher(exchange=exchange).publish_batch(events)

    assert [r is None for r in results] == [True, False] * 5
    assert len(drain(amqp, queue, 5)) == 5


def test_an_exchange_of_another_type_is_a_retryable_error(
    make_publisher: Any, exchange: str, amqp: Any
) -> None:
    amqp.exchange_declare(exchange, exchange_type="fanout", durable=True)

    (error,) = make_publisher(exchange=exchange).publish_batch([sample_cloudevent()])

    assert error is not None
    assert not error.permanent
    assert "PRECONDITION_FAILED" in str(error)


def test_an_unreachable_broker_is_a_retryable_error(make_publisher: Any) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    publisher = make_publisher(url=f"amqp://guest:guest@127.0.0.1:{port}/%2F", timeout=5)

    started = time.monotonic()
    results = publisher.publish_batch(sample_batch(3))

    assert time.monotonic() - started < 5
    assert all(isinstance(r, PublishError) and not r.permanent for r in results)
    assert "RabbitMQ unavailable" in str(results[0])


@pytest.fixture
def proxy(broker: tuple[str, int]) -> Iterator[TcpProxy]:
    proxy = TcpProxy(broker)
    yield proxy
    proxy.close()


def proxied_url(proxy: TcpProxy) -> str:
    return f"amqp://guest:guest@127.0.0.1:{proxy.port}/%2F"


def test_a_lost_connection_is_a_retryable_error_then_recovers(
    make_publisher: Any, exchange: str, bind_queue: Any, amqp: Any, proxy: TcpProxy
) -> None:
    queue = bind_queue("#")
    publisher = make_publisher(url=proxied_url(proxy), exchange=exchange, timeout=5)
    assert publisher.publish_batch(sample_batch(3)) == [None] * 3

    # The broker goes away (connections dropped, new ones refused) ...
    proxy.accepting = False
    proxy.cut()
    down = publisher.publish_batch(sample_batch(3))
    assert all(isinstance(r, PublishError) and not r.permanent for r in down)

    # ... and comes back: the next batch reconnects.
    proxy.accepting = True
    assert publisher.publish_batch(sample_batch(3)) == [None] * 3
    assert proxy.connections == 2
    assert len(drain(amqp, queue, 6)) == 6


def test_a_connection_lost_mid_batch_fails_the_unconfirmed_at_once(
    make_publisher: Any, exchange: str, bind_queue: Any, proxy: TcpProxy
) -> None:
    bind_queue("#")
    publisher = make_publisher(url=proxied_url(proxy), exchange=exchange, timeout=10)
    assert publisher.publish_batch(sample_batch(1)) == [None]

    proxy.forwarding.clear()  # the batch goes out, no confirm comes back
    threading.Timer(0.3, proxy.cut).start()
    started = time.monotonic()
    results = publisher.publish_batch(sample_batch(20))

    assert time.monotonic() - started < 5  # not the full timeout
    assert all(isinstance(r, PublishError) and not r.permanent for r in results)
    assert "closed" in str(results[0])
    assert publisher.publish_batch(sample_batch(2)) == [None, None]


@pytest.mark.parametrize("in_flight", [1, 2])
def test_no_confirm_within_the_timeout_fails_every_batch_in_flight(
    make_publisher: Any, exchange: str, bind_queue: Any, proxy: TcpProxy, in_flight: int
) -> None:
    bind_queue("#")
    publisher = make_publisher(url=proxied_url(proxy), exchange=exchange, timeout=0.5)
    assert publisher.publish_batch(sample_batch(1)) == [None]

    proxy.forwarding.clear()
    handles = [publisher.start_batch(sample_batch(3 + n)) for n in range(in_flight)]
    outcomes = [handle.wait() for handle in handles]
    for results in outcomes:
        assert all(isinstance(r, PublishError) and not r.permanent for r in results)
    assert "no publisher confirm" in str(outcomes[0][0])

    proxy.cut()  # the stuck connection goes; a fresh one works
    assert publisher.publish_batch(sample_batch(2)) == [None, None]


# --- lifecycle and configuration ---------------------------------------------------------


def test_close_stops_the_io_thread(make_publisher: Any, exchange: str) -> None:
    publisher = make_publisher(exchange=exchange)
    publisher.publish_batch([sample_cloudevent()])
    assert any(t.name == "django-orders-amqp" for t in threading.enumerate())

    publisher.close()
    publisher.close()  # idempotent

    assert not any(t.name == "django-orders-amqp" for t in threading.enumerate())


def test_an_empty_batch_needs_no_connection() -> None:
    publisher = RabbitMQPublisher(url="amqp://guest:guest@127.0.0.1:1/%2F")
    assert publisher.publish_batch([]) == []
    publisher.close()


def test_publish_raises_what_publish_batch_returns(make_publisher: Any, exchange: str) -> None:
    with pytest.raises(PublishError, match="unroutable"):
        make_publisher(exchange=exchange).publish(sample_cloudevent())


def test_without_pika_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pika", None)
    with pytest.raises(ImproperlyConfigured, match=r"django-orders\[rabbitmq\]"):
        RabbitMQPublisher(url=AMQP_URL)


def test_an_empty_exchange_name_is_a_configuration_error() -> None:
    with pytest.raises(ImproperlyConfigured, match="exchange"):
        RabbitMQPublisher(url=AMQP_URL, exchange="")


# --- timeout is end to end: connection set-up and confirms together ----------------------

#: The class and method ids that open a method frame's payload (AMQP 0-9-1 §4.2.4):
#: Basic.Publish (60, 40) and Channel.Open (20, 10). Nothing the client sends before
#: them contains these bytes.
BASIC_PUBLISH = b"\x00\x3c\x00\x28"
CHANNEL_OPEN = b"\x00\x14\x00\x0a"


@pytest.mark.parametrize(
    "silent_from",
    [
        pytest.param(BASIC_PUBLISH, id="no-confirm"),
        pytest.param(CHANNEL_OPEN, id="no-channel"),  # the connection open, the link not
    ],
)
def test_opening_the_connection_counts_against_the_batchs_timeout(
    silent_from: bytes, make_publisher: Any, exchange: str, proxy: TcpProxy
) -> None:
    """A broker slow to set the connection up, then silent: the batch fails at ``timeout``
    after it was handed over, not ``timeout`` after the connection was finally open."""

    def hold_replies(data: bytes) -> None:
        if silent_from in data:
            proxy.replies.clear()

    proxy.first_reply_delay = 0.8  # Connection.Start comes 0.8 s late
    proxy.on_client_data = hold_replies
    publisher = make_publisher(url=proxied_url(proxy), exchange=exchange, timeout=1.0)

    started = time.monotonic()
    results = publisher.publish_batch(sample_batch(3))

    assert time.monotonic() - started < 1.5  # not 0.8 s + 1 s
    assert all(isinstance(r, PublishError) and not r.permanent for r in results)


def test_a_peer_that_accepts_and_stays_silent(make_publisher: Any) -> None:
    """It never starts the AMQP handshake: the batch fails at ``timeout``, the socket is
    dropped and the I/O thread ends (cleanly: see ``no_error_of_ours_is_logged``)."""
    with SilentPeer() as peer:
        publisher = make_publisher(url=f"amqp://guest:guest@127.0.0.1:{peer.port}/%2F", timeout=0.5)

        started = time.monotonic()
        results = publisher.publish_batch(sample_batch(2))

        assert time.monotonic() - started < 1.5
        assert all(isinstance(r, PublishError) and not r.permanent for r in results)
        assert "no connection within 0.5s" in str(results[0])
        wait_until(lambda: peer.dropped == 1, 5, "the publisher drops the connection")
        assert not any(t.name == "django-orders-amqp" for t in threading.enumerate())
