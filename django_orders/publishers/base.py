"""The publisher interface the relay talks to."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from django.core.exceptions import ImproperlyConfigured


class PublishError(Exception):
    """A publish failed. ``permanent`` errors park the event as dead at once;
    ``retry_after`` (seconds) is a hint from the receiver for the next attempt."""

    def __init__(
        self, message: str, *, permanent: bool = False, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after


class Publisher:
    """Base class of publishers.

    ``publish_batch`` receives CloudEvents (dicts) and returns, for each, ``None`` when
    the broker durably accepted it or the :class:`PublishError` that refused it. Events
    of one order appear in the batch in the order they must be published.
    """

    #: Upper bound of one publish, seconds; the relay uses it when shutting down.
    timeout: float = 10.0

    def __init__(self, **options: Any) -> None:
        if options:
            raise TypeError(f"{type(self).__name__} takes no options, got {sorted(options)}")

    def publish_batch(self, events: Sequence[dict[str, Any]]) -> list[PublishError | None]:
        results: list[PublishError | None] = []
        for event in events:
            try:
                self.publish(event)
            except PublishError as exc:
                results.append(exc)
            else:
                results.append(None)
        return results

    def publish(self, event: dict[str, Any]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release connections; called when the relay stops."""


def import_driver(module: str, extra: str) -> ModuleType:
    """Import a publisher's driver, or say which extra installs it.

    Called when a publisher is created, never at import time, so importing
    ``django_orders.publishers`` needs no driver at all.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImproperlyConfigured(
            f"This publisher needs the {module!r} package: install django-orders[{extra}]."
        ) from exc
