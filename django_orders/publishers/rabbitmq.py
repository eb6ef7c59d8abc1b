"""RabbitMQ publisher: AMQP 0-9-1 with publisher confirms, through pika.

Each event is published to a durable ``topic`` exchange (declared if missing) with the
event type as routing key, as a persistent message (``delivery_mode`` 2) whose body is the
CloudEvent (``content_type`` ``application/cloudevents+json``), ``message_id`` the event
id, a ``tenantid`` header and, for an event recorded under a trace, ``traceparent`` /
``tracestate`` headers (W3C Trace Context). ``mandatory`` is set: a message no queue is
bound for comes back (``basic.return``) and counts as a failed publish, never as a silent
drop.

An event counts as published only when the broker confirms it (``basic.ack``): for a
persistent message routed to durable queues RabbitMQ confirms after writing it to disk.

Why not ``BlockingConnection``: with confirms on, its ``basic_publish`` waits for each
message's confirm before sending the next - one network round trip per event. Here the
whole batch is written at once and the confirms (often one ``multiple`` ack for many
messages) are matched to the messages by delivery tag, as the RabbitMQ confirms guide
describes ("Publisher Confirms", strategy #3: handling confirms asynchronously). The
connection is pika's ``SelectConnection``, its I/O loop running on a background thread,
which also keeps the AMQP heartbeats flowing while the relay is idle. Only the loop thread
touches the connection; :meth:`RabbitMQPublisher.publish_batch` hands it the batch with
``add_callback_threadsafe`` (pika's one thread-safe entry point) and waits.

A lost connection fails the unconfirmed messages with a retryable error; the next batch
opens a new connection. Needs the ``rabbitmq`` extra (pika).

One module, past 400 lines, and ``_Link`` with more methods than a class here usually
has, on purpose: pika's asynchronous API is a chain of callbacks (connection open →
channel open → confirm mode → exchange declared → confirms, returns, closes), one method
each, and they only make sense read together, in the order they fire, beside the state
they share (delivery tags, pending batches).
"""

from __future__ import annotations

import copy
import itertools
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from django_orders.cloudevents import CONTENT_TYPE, serialize, trace_headers
from django_orders.publishers.base import InFlight, Publisher, PublishError, Reason, import_driver

logger = logging.getLogger(__name__)

DEFAULT_URL = "amqp://guest:guest@localhost:5672/%2F"
CONNECTION_NAME = "django-orders outbox relay"
# Longest wait for the broker's answer to a Close before the socket is simply dropped.
GRACEFUL_CLOSE_WAIT = 2.0
# pika's stack timeout must be positive; past the deadline the connection gets this long.
MIN_STACK_TIMEOUT = 0.001
# How long past the deadline the caller waits for pika to report its stack timeout.
STACK_TIMEOUT_GRACE = 0.5


class RabbitMQPublisher(Publisher):
    """Publishes CloudEvents to a RabbitMQ topic exchange with publisher confirms.

    Options:

    - ``url``: ``amqp://user:password@host:port/vhost`` (``amqps://`` for TLS; pika's
      query parameters such as ``heartbeat`` or ``connection_attempts`` work) [the local
      broker as ``guest``].
    - ``exchange``: the exchange's name; declared as a durable ``topic`` exchange if it
      does not exist [``"orders.events"``].
    - ``timeout``: seconds one batch may take, end to end: opening the connection (when
      there is none) and the broker's confirm of every message [10].

    Two batches may be in flight at once (:attr:`max_batches_in_flight`): the relay
    writes the next batch to the broker while the confirms of the one before are still
    coming, as a raw publisher keeping a window of unconfirmed messages would.
    """

    max_batches_in_flight = 2

    def __init__(
        self, url: str = DEFAULT_URL, exchange: str = "orders.events", timeout: float = 10.0
    ) -> None:
        pika = import_driver("pika", "rabbitmq")
        if not exchange:
            raise ImproperlyConfigured(
                "RabbitMQPublisher needs an 'exchange' name: the default exchange routes by "
                "queue name, not by event type."
            )
        self._pika = pika
        try:
            self._parameters = pika.URLParameters(url)
        except Exception as exc:
            raise ImproperlyConfigured(f"RabbitMQPublisher 'url' is invalid: {exc}") from exc
        self._parameters.client_properties = {
            "connection_name": CONNECTION_NAME,
            **(self._parameters.client_properties or {}),
        }
        self.exchange = exchange
        self.timeout = float(timeout)
        self._link: _Link | None = None
        self._lock = threading.Lock()

    def publish_batch(self, events: Sequence[dict[str, Any]]) -> list[PublishError | None]:
        return self.start_batch(events).wait()

    def start_batch(self, events: Sequence[dict[str, Any]]) -> InFlight:
        """Write the batch to the broker now; ``wait()`` waits for its confirms.

        The batch's ``timeout`` runs from here: opening a connection counts against it.
        """
        if not events:
            return InFlight([])
        deadline = time.monotonic() + self.timeout
        with self._lock:
            link = self._link
            if link is None or not link.usable:
                if link is not None:
                    link.close(max(0.0, deadline - time.monotonic()))
                self._link = None
                try:
                    link = _Link(
                        self._pika, self._parameters, self.exchange, deadline, self.timeout
                    )
                except _LinkError as exc:
                    return InFlight(
                        [
                            PublishError(f"RabbitMQ unavailable: {exc}", reason=Reason.UNAVAILABLE)
                            for _ in events
                        ]
                    )
                self._link = link
            return link.start(events, deadline, self.timeout)

    def close(self) -> None:
        with self._lock:
            link, self._link = self._link, None
        if link is not None:
            link.close(self.timeout)


class _LinkError(Exception):
    """The connection could not be opened or set up."""


_UNSET: Any = object()


class _Batch(InFlight):
    """The results of one batch, filled in by the I/O thread, read by the caller."""

    def __init__(
        self, link: _Link, events: Sequence[dict[str, Any]], deadline: float, timeout: float
    ) -> None:
        super().__init__([_UNSET] * len(events))
        self.link = link
        self.events = events
        self.timeout = timeout
        self.deadline = deadline
        self.remaining = len(events)
        self.done = threading.Event()
        self._lock = threading.Lock()

    @property
    def results(self) -> list[PublishError | None]:
        return self._results

    def wait(self) -> list[PublishError | None]:
        """The batch's results once every message is confirmed (or failed), at most until
        ``timeout`` after :meth:`RabbitMQPublisher.start_batch` took it."""
        return self.link.wait(self, max(0.0, self.deadline - time.monotonic()))

    def settle(self, index: int, result: PublishError | None) -> None:
        with self._lock:
            if self.results[index] is not _UNSET:
                return
            self.results[index] = result
            self.remaining -= 1
            if self.remaining == 0:
                self.done.set()

    def fail_unsettled(self, message: str, reason: str = Reason.UNAVAILABLE) -> None:
        """Fail every message still without an outcome (and ignore late confirms): the
        connection or channel is gone, unless ``reason`` says otherwise."""
        with self._lock:
            for index, result in enumerate(self.results):
                if result is _UNSET:
                    self.results[index] = PublishError(message, reason=reason)
            self.remaining = 0
            self.done.set()


class _Link:
    """One connection with one confirm-mode channel, its I/O loop on its own thread."""

    def __init__(
        self, pika: Any, parameters: Any, exchange: str, deadline: float, timeout: float
    ) -> None:
        self._pika = pika
        self.exchange = exchange
        self.usable = False
        self._error_text: str | None = None  # the first thing that went wrong
        self._ready = threading.Event()
        self._channel: Any = None
        # Delivery tags: the broker numbers the messages of a confirm-mode channel 1, 2, …
        self._next_tag = 0
        # tag -> (batch, index); dicts keep insertion order, so tags stay ascending.
        self._pending: dict[int, tuple[_Batch, int]] = {}
        self._by_message_id: dict[str, deque[int]] = {}
        self._returned: dict[int, str] = {}
        # Batches handed to the I/O thread; failed there if the loop stops first.
        self._batches: set[_Batch] = set()
        self._batches_lock = threading.Lock()
        self._stopped = False

        # pika's own time limit for bringing the connection up (TCP, TLS, AMQP handshake)
        # is what is left of the batch's: on expiry it gives up cleanly, through the
        # open-error callback. (Aborting a connection that is still opening from outside
        # trips assertions in pika's connection workflow.)
        parameters = copy.copy(parameters)
        parameters.stack_timeout = min(
            max(deadline - time.monotonic(), MIN_STACK_TIMEOUT),
            parameters.stack_timeout or math.inf,
        )
        self._connection = pika.SelectConnection(
            parameters,
            on_open_callback=self._on_connection_open,
            on_open_error_callback=self._on_connection_open_error,
            on_close_callback=self._on_connection_closed,
        )
        self._thread = threading.Thread(target=self._run, name="django-orders-amqp", daemon=True)
        self._thread.start()
        ready = self._ready.wait(max(0.0, deadline - time.monotonic()))
        if not ready and not self._connection.is_open:
            # Still opening: pika's stack timeout, due now, ends it (and sets _ready).
            ready = self._ready.wait(STACK_TIMEOUT_GRACE)
        if not ready:  # open, but the channel or the exchange never came
            self.close(GRACEFUL_CLOSE_WAIT, graceful=False)
            raise _LinkError(f"no connection within {timeout:g}s")
        if not self.usable:
            self.close(GRACEFUL_CLOSE_WAIT)
            if time.monotonic() >= deadline:
                raise _LinkError(f"no connection within {timeout:g}s: {self._error}")
            raise _LinkError(self._error)

    # --- caller side ---------------------------------------------------------------------

    def start(self, events: Sequence[dict[str, Any]], deadline: float, timeout: float) -> _Batch:
        """Hand the batch to the I/O thread, which writes it at once."""
        batch = _Batch(self, events, deadline, timeout)
        with self._batches_lock:
            if self._stopped:
                batch.fail_unsettled(f"RabbitMQ {self._error}")
                return batch
            self._batches.add(batch)
        self._call_soon(lambda: self._publish(batch))
        return batch

    def wait(self, batch: _Batch, timeout: float) -> list[PublishError | None]:
        finished = batch.done.wait(timeout)
        with self._batches_lock:
            self._batches.discard(batch)
        if not finished:
            # The broker may still confirm (and deliver) these later: at-least-once, the
            # relay retries them. This link's state is unknown now; the next batch reconnects.
            batch.fail_unsettled(
                f"no publisher confirm from RabbitMQ within {batch.timeout:g}s",
                reason=Reason.TIMEOUT,
            )
            self.close(batch.timeout, graceful=False)
        return batch.results

    def close(self, timeout: float, *, graceful: bool = True) -> None:
        """Close the connection (AMQP Close handshake if ``graceful``) and end the thread."""
        self.usable = False
        if graceful and self._thread.is_alive():
            self._call_soon(self._close)
            self._thread.join(min(timeout, GRACEFUL_CLOSE_WAIT))
        if self._thread.is_alive():  # no answer to Close, or no time for it: drop the socket
            self._call_soon(self._abort)
            self._thread.join(min(timeout, GRACEFUL_CLOSE_WAIT))
        if self._thread.is_alive():  # pragma: no cover - the abort itself got stuck
            self._call_soon(self._connection.ioloop.stop)
            self._thread.join(timeout)

    def _call_soon(self, callback: Any) -> None:
        """Run ``callback`` on the I/O thread (a no-op once the loop has stopped)."""
        try:
            self._connection.ioloop.add_callback_threadsafe(callback)
        except Exception:  # the loop stopped and closed meanwhile: nothing left to do
            logger.debug("RabbitMQ I/O loop already closed", exc_info=True)

    # --- I/O thread ----------------------------------------------------------------------

    def _run(self) -> None:
        ioloop = self._connection.ioloop
        try:
            ioloop.start()
        except Exception:  # pragma: no cover - a bug in a callback; fail loudly in the logs
            logger.exception("RabbitMQ I/O loop crashed")
            self.usable = False
            self._fail_pending("RabbitMQ I/O loop crashed")
        finally:
            with self._batches_lock:
                self._stopped = True
                batches = list(self._batches)
            for batch in batches:
                batch.fail_unsettled(f"RabbitMQ {self._error}")
            self._ready.set()
            ioloop.close()

    def _close(self) -> None:
        self.usable = False
        if self._connection.is_closed:
            self._connection.ioloop.stop()
        elif not self._connection.is_closing:
            self._connection.close()

    def _abort(self) -> None:
        """Drop the TCP connection without the AMQP handshake; ends in the close callback."""
        self.usable = False
        if self._connection.is_closed:
            self._connection.ioloop.stop()
            return
        try:
            # What pika itself does on a missed heartbeat: record why, then bring the
            # transport down; the close callback follows. The public close() waits for the
            # broker's Close-Ok, which may never come. (Bringing the transport down without
            # a reason recorded trips an assertion in pika and crashes the I/O loop.)
            self._connection._terminate_stream(
                self._pika.exceptions.ConnectionClosedByClient(200, "aborted by django-orders")
            )
        except Exception:
            logger.debug("Could not abort the RabbitMQ connection", exc_info=True)
            self._connection.ioloop.stop()

    def _on_connection_open(self, connection: Any) -> None:
        connection.channel(on_open_callback=self._on_channel_open)

    def _on_connection_open_error(self, connection: Any, error: Exception) -> None:
        self._set_error(f"cannot connect: {error!r}")
        self._ready.set()
        connection.ioloop.stop()

    def _on_connection_closed(self, connection: Any, reason: Exception) -> None:
        self._lost(f"connection closed: {reason!r}")
        connection.ioloop.stop()

    def _on_channel_open(self, channel: Any) -> None:
        self._channel = channel
        channel.add_on_close_callback(self._on_channel_closed)
        channel.add_on_return_callback(self._on_return)
        channel.confirm_delivery(ack_nack_callback=self._on_confirm, callback=self._on_confirm_mode)

    def _on_confirm_mode(self, frame: Any) -> None:
        self._channel.exchange_declare(
            exchange=self.exchange,
            exchange_type="topic",
            durable=True,
            callback=self._on_exchange_declared,
        )

    def _on_exchange_declared(self, frame: Any) -> None:
        self.usable = True
        self._ready.set()

    def _on_channel_closed(self, channel: Any, reason: Exception) -> None:
        # E.g. 406 PRECONDITION_FAILED: the exchange exists with another type.
        self._lost(f"channel closed: {reason!r}")
        if self._connection.is_open:
            self._connection.close()

    def _publish(self, batch: _Batch) -> None:
        if not self.usable:
            batch.fail_unsettled(f"RabbitMQ {self._error}")
            return
        pika = self._pika
        for index, event in enumerate(batch.events):
            message_id = str(event["id"])
            properties = pika.BasicProperties(
                content_type=CONTENT_TYPE,
                delivery_mode=2,  # persistent
                message_id=message_id,
                type=event["type"],
                app_id="django-orders",
                headers={"tenantid": event.get("tenantid"), **trace_headers(event)},
            )
            try:
                self._channel.basic_publish(
                    exchange=self.exchange,
                    routing_key=event["type"],
                    body=serialize(event),
                    properties=properties,
                    mandatory=True,
                )
            except Exception as exc:  # the channel closed under us
                self.usable = False
                batch.fail_unsettled(f"RabbitMQ publish failed: {exc!r}")
                return
            self._next_tag += 1
            self._pending[self._next_tag] = (batch, index)
            self._by_message_id.setdefault(message_id, deque()).append(self._next_tag)

    def _on_return(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        # basic.return comes before the message's basic.ack (RabbitMQ confirms guide), so
        # the oldest unconfirmed message with this id is the one that came back.
        tags = self._by_message_id.get(properties.message_id)
        if tags:
            self._returned[tags[0]] = (
                f"RabbitMQ returned the message as unroutable ({method.reply_code} "
                f"{method.reply_text}): no queue is bound to exchange {method.exchange!r} "
                f"for routing key {method.routing_key!r}"
            )

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        acked = isinstance(method, self._pika.spec.Basic.Ack)
        last = method.delivery_tag
        tags = [last]
        if method.multiple:  # every unconfirmed tag up to `last`; _pending is ascending
            tags = list(itertools.takewhile(lambda t: t <= last, self._pending))
        for tag in tags:
            entry = self._pending.pop(tag, None)
            if entry is None:
                continue
            batch, index = entry
            message_id = str(batch.events[index]["id"])
            same_id = self._by_message_id.get(message_id)
            if same_id:
                same_id.remove(tag)
                if not same_id:
                    del self._by_message_id[message_id]
            returned = self._returned.pop(tag, None)
            if not acked:
                batch.settle(index, PublishError("RabbitMQ refused the message (basic.nack)"))
            elif returned is not None:
                batch.settle(index, PublishError(returned))
            else:
                batch.settle(index, None)

    @property
    def _error(self) -> str:
        return self._error_text or "connection closed"

    def _set_error(self, text: str) -> None:
        if self._error_text is None:
            self._error_text = text

    def _lost(self, text: str) -> None:
        """The channel or the connection is gone: fail what waits for a confirm."""
        self.usable = False
        self._set_error(text)
        self._fail_pending(f"RabbitMQ {self._error}")
        self._ready.set()

    def _fail_pending(self, message: str) -> None:
        batches = {id(batch): batch for batch, _ in self._pending.values()}
        self._pending.clear()
        self._by_message_id.clear()
        self._returned.clear()
        for batch in batches.values():
            batch.fail_unsettled(message)
