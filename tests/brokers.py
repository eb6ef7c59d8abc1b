"""The brokers the tests publish to: where they are, and reading back what was published.

Nothing here starts a broker: the machine's RabbitMQ (5672) and Redis (6379) are used, and
a test that needs one is skipped, saying so, when it does not answer.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

AMQP_URL = os.environ.get("ORDERS_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
REDIS_URL = os.environ.get("ORDERS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def amqp_connection() -> Iterator[Any]:
    """A blocking connection to the test broker (the test is skipped when it does not
    answer), closed afterwards. Used as the ``amqp`` fixture (tests/conftest.py)."""
    pika = pytest.importorskip("pika")
    try:
        connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    except pika.exceptions.AMQPError as exc:
        pytest.skip(f"RabbitMQ is not reachable: {exc!r}")
    yield connection
    if connection.is_open:
        connection.close()


def redis_connection() -> Iterator[Any]:
    """A client of the test Redis (the test is skipped when it does not answer), closed
    afterwards. Used as the ``redis_client`` fixture (tests/conftest.py)."""
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis is not reachable: {exc!r}")
    yield client
    client.close()


def drain(channel: Any, queue: str, expected: int, timeout: float = 5.0) -> list[tuple]:
    """Consume ``expected`` messages (method, properties, body) from a RabbitMQ ``queue``
    through a pika blocking channel, auto-acknowledged."""
    messages: list[tuple] = []
    for method, properties, body in channel.consume(
        queue, auto_ack=True, inactivity_timeout=timeout
    ):
        if method is None:  # nothing more within the timeout
            break
        messages.append((method, properties, body))
        if len(messages) == expected:
            break
    channel.cancel()
    return messages
