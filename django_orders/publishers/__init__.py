"""Outbox publishers. Each broker publisher lives in its own module and imports its
driver lazily, so ``django_orders.publishers.RabbitMQPublisher`` needs ``pika`` only
when it is used.
"""

from __future__ import annotations

from typing import Any

from django_orders.publishers.base import InFlight, NotSent, Publisher, PublishError, Reason
from django_orders.publishers.log import LoggingPublisher

__all__ = [
    "InFlight",
    "KafkaPublisher",
    "LoggingPublisher",
    "NatsJetStreamPublisher",
    "NotSent",
    "PublishError",
    "Publisher",
    "RabbitMQPublisher",
    "Reason",
    "RedisStreamPublisher",
    "WebhookPublisher",
]

_LAZY = {
    "WebhookPublisher": "django_orders.publishers.webhook",
    "RabbitMQPublisher": "django_orders.publishers.rabbitmq",
    "RedisStreamPublisher": "django_orders.publishers.redis_streams",
    "KafkaPublisher": "django_orders.publishers.kafka",
    "NatsJetStreamPublisher": "django_orders.publishers.nats_jetstream",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
