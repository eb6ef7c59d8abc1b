"""RabbitMQ helpers for the tests that read what the relay published."""

from __future__ import annotations

from typing import Any


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
