"""The publisher interface the relay talks to: one abstract base, :class:`Publisher`.

A publisher declares what it can do with class attributes (``timeout``,
``max_batches_in_flight``) and implements at least one way of sending: ``publish``
(one event), ``publish_batch`` (a batch) or ``start_batch`` (a batch answered later).
The relay checks a publisher when it starts (:func:`check_publisher`) and says what is
missing, rather than failing every batch.
"""

from __future__ import annotations

import abc
import enum
import importlib
import logging
import math
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from django.core.exceptions import ImproperlyConfigured

logger = logging.getLogger("django_orders.publishers")


class Reason(enum.StrEnum):
    """Why a publish failed, as the relay's metrics count it (``events_failed{reason}``):
    a :class:`PublishError`'s ``reason``. Members are strings (``Reason.TIMEOUT ==
    "timeout"``), so a publisher may also pass a reason of its own."""

    PERMANENT = "permanent"  # the receiver refuses this event and will again
    TRANSIENT = "transient"  # refused for now (a 5xx, a 429, a nack, an unroutable message)
    TIMEOUT = "timeout"  # no complete answer within the publisher's timeout
    UNAVAILABLE = "unavailable"  # no connection: refused, dropped, the broker down


#: The reasons under the module-level names earlier releases documented.
PERMANENT, TRANSIENT, TIMEOUT, UNAVAILABLE = Reason


class PublishError(Exception):
    """A publish failed. ``permanent`` errors park the event as dead at once;
    ``retry_after`` (seconds) is a hint from the receiver for the next attempt;
    ``reason`` says why, for metrics (default: ``"permanent"`` or ``"transient"``)."""

    def __init__(
        self,
        message: str,
        *,
        permanent: bool = False,
        retry_after: float | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after
        self.reason = reason or (Reason.PERMANENT if permanent else Reason.TRANSIENT)


class NotSent(PublishError):
    """The relay was stopping, so this event of the batch was never sent.

    The relay gives it back (due at once, its attempt undone) instead of counting a
    failure: another relay, or the next start, publishes it without waiting for a lease.
    """


class InFlight:
    """A batch handed to a publisher (:meth:`Publisher.start_batch`) whose results may
    not be in yet. :meth:`wait` returns them, as :meth:`Publisher.publish_batch` would.

    This base class holds results that are already known; a publisher that sends
    asynchronously returns a subclass whose :meth:`wait` blocks (at most its ``timeout``).
    """

    def __init__(self, results: list[PublishError | None]) -> None:
        self._results = results

    def wait(self) -> list[PublishError | None]:
        return self._results


# Abstract, with no abstract method: a subclass implements any one of three ways of
# sending (SENDING_METHODS); check_publisher() enforces that when a relay starts.
class Publisher(abc.ABC):  # noqa: B024
    """Base class of publishers (docs/guide/publishers.md, "Writing your own publisher").

    ``publish_batch`` receives CloudEvents (dicts) and returns, for each, ``None`` when
    the broker durably accepted it or the :class:`PublishError` that refused it. Events
    of one aggregate appear in the batch in the order they must be published. A subclass
    implements ``publish``, ``publish_batch`` or ``start_batch``; the others default to
    it.
    """

    #: Upper bound of one send, seconds, end to end (connecting, writing, the whole
    #: answer), not of each socket read; the relay uses it when shutting down.
    timeout: float = 10.0

    #: How many batches the relay may hand to :meth:`start_batch` before it waits for the
    #: results of the oldest. ``1``: one batch at a time. More pays off for a broker that
    #: confirms asynchronously (RabbitMQ): the next batch is on the wire while the
    #: confirms of the one before are still coming. Batches in flight together never hold
    #: two events of one order (each was claimed while the others were leased).
    max_batches_in_flight: int = 1

    #: Set by :meth:`request_stop`: events not sent yet are answered with :class:`NotSent`.
    #: A class attribute, so subclasses need not call ``super().__init__()``.
    stop_requested: bool = False

    def __init__(self, **options: Any) -> None:
        if options:
            raise TypeError(f"{type(self).__name__} takes no options, got {sorted(options)}")

    def request_stop(self) -> None:
        """The relay is stopping: finish the sends in flight, start no new one.

        Called from a signal handler or another thread, so it only sets a flag. A
        ``publish_batch`` that sends one event after another checks it before each send
        and answers the rest with :class:`NotSent`; one that hands the whole batch to the
        broker at once may ignore it (its publish is bounded by :attr:`timeout`).
        """
        self.stop_requested = True

    def publish_batch(self, events: Sequence[dict[str, Any]]) -> list[PublishError | None]:
        """Publish ``events`` in order; one result per event (``None`` when accepted).

        The default calls :meth:`publish` for each event. Override it to send a batch at once.
        """
        results: list[PublishError | None] = []
        for index, event in enumerate(events):
            if self.stop_requested:
                results.extend(NotSent("not sent: the relay is stopping") for _ in events[index:])
                break
            try:
                self.publish(event)
            except PublishError as exc:
                results.append(exc)
            except Exception as exc:
                # A bug or an unexpected driver error. The events already sent are kept
                # as published (no duplicates for them); the rest are not tried — the
                # publisher is in an unknown state, and each could wait out a timeout.
                logger.exception("%s.publish raised", type(self).__qualname__)
                error = f"{type(exc).__name__}: {exc}"
                results.append(PublishError(error))
                results.extend(
                    PublishError(f"not sent: an earlier event of the batch failed with: {error}")
                    for _ in events[index + 1 :]
                )
                break
            else:
                results.append(None)
        return results

    def start_batch(self, events: Sequence[dict[str, Any]]) -> InFlight:
        """Start publishing ``events``; the results come from the returned object's
        ``wait()``. The default publishes the whole batch now (:meth:`publish_batch`)."""
        return InFlight(self.publish_batch(events))

    def publish(self, event: dict[str, Any]) -> None:
        """Publish one event; return once the broker accepted it, raise ``PublishError``.

        A subclass that sends batches (:meth:`publish_batch` or :meth:`start_batch`) gets
        this for free: a batch of one.
        """
        cls = type(self)
        if all(getattr(cls, name) is getattr(Publisher, name) for name in SENDING_METHODS):
            raise NotImplementedError(f"{cls.__qualname__} implements no way of sending")
        (error,) = self.start_batch([event]).wait()
        if error is not None:
            raise error

    def close(self) -> None:  # noqa: B027 - optional: most publishers hold a connection
        """Release connections; called when the relay stops."""


#: The ways of sending a subclass may implement; it must implement at least one.
SENDING_METHODS = ("publish", "publish_batch", "start_batch")


def check_publisher(publisher: object) -> None:
    """Raise ``ImproperlyConfigured`` naming what ``publisher`` lacks to be one.

    The relay calls it when it starts, so a misfit fails at once with a reason instead of
    failing every batch. Checked: a :class:`Publisher` instance; one of
    :data:`SENDING_METHODS` implemented; ``timeout`` a positive number of seconds;
    ``max_batches_in_flight`` an integer ≥ 1.
    """
    name = type(publisher).__qualname__
    if not isinstance(publisher, Publisher):
        missing = [
            attribute
            for attribute in (
                *SENDING_METHODS,
                "close",
                "request_stop",
                "timeout",
                "max_batches_in_flight",
            )
            if not hasattr(publisher, attribute)
        ]
        lacks = f" (it lacks {', '.join(missing)})" if missing else ""
        raise ImproperlyConfigured(
            f"{name} is not a publisher: subclass django_orders.publishers.Publisher{lacks}."
        )
    cls = type(publisher)
    if all(getattr(cls, method) is getattr(Publisher, method) for method in SENDING_METHODS):
        raise ImproperlyConfigured(
            f"{name} implements none of publish(), publish_batch() or start_batch(): "
            "it has no way to send an event."
        )
    timeout = publisher.timeout
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not math.isfinite(timeout)
        or timeout <= 0
    ):
        raise ImproperlyConfigured(
            f"{name}.timeout must be a positive number of seconds, not {timeout!r}."
        )
    depth = publisher.max_batches_in_flight
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ImproperlyConfigured(
            f"{name}.max_batches_in_flight must be an integer ≥ 1, not {depth!r}."
        )


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
