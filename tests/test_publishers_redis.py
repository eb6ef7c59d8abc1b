"""docs/guide/publishers.md: the Redis Streams publisher against a real Redis server.

Needs Redis on 127.0.0.1:6379 (``ORDERS_TEST_REDIS_URL`` overrides); skipped with a
reason when it does not answer. Each test writes its own stream key (uuid) and deletes it.
"""

from __future__ import annotations

import json
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
from django_orders.publishers import PublishError, RedisStreamPublisher
from tests.cloudevent_samples import sample_batch, sample_cloudevent
from tests.misbehaving_peers import SilentPeer, TricklingRedis
from tests.tcp_proxy import TcpProxy
from tests.waiting import wait_until

redis = pytest.importorskip("redis")

pytestmark = pytest.mark.redis

REDIS_URL = os.environ.get("ORDERS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="module")
def server() -> tuple[str, int]:
    parts = urlsplit(REDIS_URL)
    address = (parts.hostname or "127.0.0.1", parts.port or 6379)
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(
            f"Redis is not reachable at {address[0]}:{address[1]} ({exc}); "
            "`scripts/ensure-services.sh redis` starts it"
        )
    finally:
        client.close()
    return address


@pytest.fixture
def client(server: tuple[str, int]) -> Iterator[Any]:
    """The test's own connection, for reading streams and cleaning up."""
    connection = redis.Redis.from_url(REDIS_URL)
    yield connection
    connection.close()


@pytest.fixture
def stream(client: Any) -> Iterator[str]:
    key = f"test.orders.{uuid.uuid4().hex}"
    yield key
    client.delete(key)


@pytest.fixture
def make_publisher(
    server: tuple[str, int], stream: str
) -> Iterator[Callable[..., RedisStreamPublisher]]:
    made: list[RedisStreamPublisher] = []

    def make(**options: Any) -> RedisStreamPublisher:
        options.setdefault("url", REDIS_URL)
        options.setdefault("stream", stream)
        publisher = RedisStreamPublisher(**options)
        made.append(publisher)
        return publisher

    yield make
    for publisher in made:
        publisher.close()


def test_an_entry_carries_id_type_tenantid_and_the_event(
    make_publisher: Any, stream: str, client: Any
) -> None:
    event = sample_cloudevent("order.closed", tenant="shop-3", total_cents=42)

    assert make_publisher().publish_batch([event]) == [None]

    ((_, fields),) = client.xrange(stream)
    assert fields == {
        b"id": event["id"].encode(),
        b"type": b"order.closed",
        b"tenantid": b"shop-3",
        b"event": serialize(event),
    }
    assert json.loads(fields[b"event"]) == event


def test_a_batch_appends_in_order_with_a_result_per_entry(
    make_publisher: Any, stream: str, client: Any
) -> None:
    events = sample_batch(250)
    publisher = make_publisher()

    assert publisher.publish_batch(events[:100]) == [None] * 100
    assert publisher.publish_batch(events[100:]) == [None] * 150

    assert [f[b"id"].decode() for _, f in client.xrange(stream)] == [e["id"] for e in events]


def test_without_maxlen_nothing_is_trimmed(make_publisher: Any, stream: str, client: Any) -> None:
    publisher = make_publisher()
    for _ in range(5):
        publisher.publish_batch(sample_batch(200))
    assert client.xlen(stream) == 1000


def test_maxlen_trims_approximately(make_publisher: Any, stream: str, client: Any) -> None:
    publisher = make_publisher(maxlen=50)
    batches = [sample_batch(200) for _ in range(5)]
    for batch in batches:
        assert publisher.publish_batch(batch) == [None] * 200

    length = client.xlen(stream)
    # "MAXLEN ~ 50" keeps at least 50 and trims whole macro nodes (100 entries by default).
    assert 50 <= length < 1000
    # What survives is the newest: the oldest entries went first, read or not.
    ((_, newest),) = client.xrevrange(stream, count=1)
    assert newest[b"id"].decode() == batches[-1][-1]["id"]
    ((_, oldest),) = client.xrange(stream, count=1)
    assert oldest[b"id"].decode() != batches[0][0]["id"]


def test_a_key_of_another_type_fails_every_entry(
    make_publisher: Any, stream: str, client: Any
) -> None:
    client.set(stream, "not a stream")

    results = make_publisher().publish_batch(sample_batch(3))

    assert all(isinstance(r, PublishError) and not r.permanent for r in results)
    assert "WRONGTYPE" in str(results[0])


def test_an_unreachable_server_is_a_retryable_error(make_publisher: Any) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    publisher = make_publisher(url=f"redis://127.0.0.1:{port}/0", timeout=2)

    started = time.monotonic()
    results = publisher.publish_batch(sample_batch(3))

    assert time.monotonic() - started < 2
    assert all(isinstance(r, PublishError) and not r.permanent for r in results)
    assert "Redis unavailable" in str(results[0])


@pytest.fixture
def proxy(server: tuple[str, int]) -> Iterator[TcpProxy]:
    proxy = TcpProxy(server)
    yield proxy
    proxy.close()


def test_the_server_going_away_and_coming_back(
    make_publisher: Any, stream: str, client: Any, proxy: TcpProxy
) -> None:
    db = urlsplit(REDIS_URL).path or "/0"
    publisher = make_publisher(url=f"redis://127.0.0.1:{proxy.port}{db}", timeout=2)
    assert publisher.publish_batch(sample_batch(2)) == [None, None]

    proxy.accepting = False
    proxy.cut()
    down = publisher.publish_batch(sample_batch(2))
    assert all(isinstance(r, PublishError) and not r.permanent for r in down)

    proxy.accepting = True
    assert publisher.publish_batch(sample_batch(2)) == [None, None]
    assert client.xlen(stream) == 4


def test_a_dropped_connection_is_replaced_without_failing(
    make_publisher: Any, stream: str, client: Any, proxy: TcpProxy
) -> None:
    db = urlsplit(REDIS_URL).path or "/0"
    publisher = make_publisher(url=f"redis://127.0.0.1:{proxy.port}{db}", timeout=2)
    assert publisher.publish_batch(sample_batch(2)) == [None, None]

    proxy.cut()  # e.g. the server restarted or an idle timeout closed the connection

    assert publisher.publish_batch(sample_batch(2)) == [None, None]
    assert client.xlen(stream) == 4


def test_a_timeout_is_a_retryable_error(make_publisher: Any, proxy: TcpProxy) -> None:
    db = urlsplit(REDIS_URL).path or "/0"
    publisher = make_publisher(url=f"redis://127.0.0.1:{proxy.port}{db}", timeout=0.3)
    assert publisher.publish_batch(sample_batch(1)) == [None]

    proxy.forwarding.clear()
    results = publisher.publish_batch(sample_batch(2))

    assert all(isinstance(r, PublishError) and not r.permanent for r in results)


def test_publish_raises_what_publish_batch_returns(
    make_publisher: Any, client: Any, stream: str
) -> None:
    client.set(stream, "not a stream")
    with pytest.raises(PublishError, match="WRONGTYPE"):
        make_publisher().publish(sample_cloudevent())


def test_an_empty_batch_sends_nothing(make_publisher: Any, stream: str, client: Any) -> None:
    assert make_publisher().publish_batch([]) == []
    assert client.exists(stream) == 0


@pytest.mark.parametrize("maxlen", [0, -1, 1.5, "100", True])
def test_an_invalid_maxlen_is_a_configuration_error(maxlen: Any) -> None:
    with pytest.raises(ImproperlyConfigured, match="maxlen"):
        RedisStreamPublisher(url=REDIS_URL, maxlen=maxlen)


def test_without_redis_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(ImproperlyConfigured, match=r"django-orders\[redis\]"):
        RedisStreamPublisher(url=REDIS_URL)


# --- timeout is end to end: replies that come too slowly or never ------------------------


def redis_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("django-orders-redis")]


def test_replies_trickled_byte_by_byte_time_out_at_the_deadline() -> None:
    """Each byte of each XADD reply comes well within the socket timeout; the batch's
    replies as a whole never come within ``timeout``: the batch fails then, and its
    connection is dropped, not reused half-read."""
    with TricklingRedis(interval=0.02) as peer:
        publisher = RedisStreamPublisher(url=peer.url, stream="s", timeout=0.5)
        try:
            started = time.monotonic()
            results = publisher.publish_batch(sample_batch(5))  # 5 replies: 2.2 s in all

            assert time.monotonic() - started < 1.2
            assert all(isinstance(r, PublishError) and not r.permanent for r in results)
            assert "timed out" in str(results[0])
            wait_until(lambda: peer.dropped == 1, 5, "the publisher drops the connection")

            publisher.publish_batch(sample_batch(1))
            assert peer.connections == 2
        finally:
            publisher.close()
    assert redis_threads() == []


def test_a_server_that_accepts_and_stays_silent_costs_one_timeout() -> None:
    """Not one timeout per read, nor a second one on a retried connection."""
    with SilentPeer() as peer:
        publisher = RedisStreamPublisher(url=f"redis://127.0.0.1:{peer.port}/0", timeout=0.5)
        try:
            started = time.monotonic()
            results = publisher.publish_batch(sample_batch(3))

            assert time.monotonic() - started < 1.2
            assert all(isinstance(r, PublishError) and not r.permanent for r in results)
            assert peer.connections == 1
        finally:
            publisher.close()
    assert redis_threads() == []
