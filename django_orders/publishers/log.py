"""The default publisher: one JSON line per event on the ``django_orders.events`` logger."""

from __future__ import annotations

import json
import logging
from typing import Any

from django_orders.publishers.base import Publisher

logger = logging.getLogger("django_orders.events")


class LoggingPublisher(Publisher):
    """Logs each CloudEvent as one JSON line. Needs nothing; handy in development."""

    def publish(self, event: dict[str, Any]) -> None:
        logger.info(json.dumps(event, separators=(",", ":"), sort_keys=True))
