"""The default publisher: one JSON line per event on the ``django_orders.events`` logger."""

from __future__ import annotations

import logging
from typing import Any

from django_orders.cloudevents import serialize
from django_orders.publishers.base import Publisher

logger = logging.getLogger("django_orders.events")


class LoggingPublisher(Publisher):
    """Logs each CloudEvent as one JSON line. Needs nothing; handy in development."""

    def publish(self, event: dict[str, Any]) -> None:
        # The very bytes the other publishers send, so a logged line is what a consumer
        # of the webhook or a broker would receive.
        logger.info(serialize(event).decode("utf-8"))
