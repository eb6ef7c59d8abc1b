"""NATS JetStream publisher: each event published to a subject and acknowledged by its stream.

The subject comes from a template (``orders.{type}``: the event type; ``{tenantid}`` and
``{subject}``, the order's id, also work). The message is the CloudEvent JSON (the same
bytes the other publishers send) with the headers ``Nats-Msg-Id`` (the event id),
``Content-Type: application/cloudevents+json`` and, for an event recorded under a trace,
``traceparent`` / ``tracestate`` (W3C Trace Context). JetStream drops a message whose
``Nats-Msg-Id`` it has stored within the stream's duplicate window (two minutes by default),
so an event the relay sends again after a lost acknowledgement is stored once.

An event counts as published only when the stream acknowledges it (a ``PubAck``): with
file storage, JetStream has written it (and, in a cluster, a majority of the stream's
replicas have it). A duplicate acknowledged as such counts as published too.

How a synchronous relay drives an asyncio client: nats-py is asyncio only, so the publisher
runs one event loop on a private thread (``django-orders-nats``) for its whole life; the
connection lives there. :meth:`NatsJetStreamPublisher.publish_batch` hands the batch to that
loop (``asyncio.run_coroutine_threadsafe``) and blocks on the result. On the loop the
batch's publishes run concurrently (``asyncio.gather``): every message is written before
the first acknowledgement is awaited, so a batch costs about one round trip, not one per
event. What it costs: one thread, and per batch one wake-up of the loop and one of the
relay's thread (tens of microseconds), next to a coroutine and a reply future per event.
``asyncio.run()`` per batch would instead open a new connection each time.

The timeout is end to end: connecting (when there is no connection) and every
acknowledgement of the batch share one deadline, enforced on the loop; a batch whose
acknowledgements are not all in by then fails as a timeout (the messages that did arrive
are de-duplicated by their ``Nats-Msg-Id`` when the relay sends them again). Needs the
``nats`` extra (nats-py).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import re
import string
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from django_orders.cloudevents import CONTENT_TYPE, serialize, trace_headers
from django_orders.publishers.base import InFlight, Publisher, PublishError, Reason, import_driver

logger = logging.getLogger(__name__)

DEFAULT_SERVERS = "nats://localhost:4222"
CONNECTION_NAME = "django-orders outbox relay"
#: The CloudEvent attributes a subject template may use.
SUBJECT_FIELDS = ("type", "tenantid", "subject")
#: Seconds past a batch's deadline the relay's thread waits for the loop to answer.
LOOP_GRACE = 1.0


class _Batch(InFlight):
    """A batch handed to the event loop: its results once the loop has them."""

    def __init__(
        self,
        future: concurrent.futures.Future[list[PublishError | None]],
        size: int,
        timeout: float,
    ) -> None:
        super().__init__([])
        self._future = future
        self._size = size
        self._timeout = timeout

    def wait(self) -> list[PublishError | None]:
        try:
            # The loop keeps the deadline; this only guards against a loop that is stuck.
            return self._future.result(self._timeout + LOOP_GRACE)
        except concurrent.futures.TimeoutError:  # pragma: no cover - the loop is stuck
            self._future.cancel()
            error = f"NATS timed out: the batch did not end within {self._timeout:g}s"
            return [PublishError(error, reason=Reason.TIMEOUT) for _ in range(self._size)]


class NatsJetStreamPublisher(Publisher):
    """Publishes CloudEvents to NATS JetStream, each acknowledged by its stream.

    Options:

    - ``servers``: a NATS URL or a list of them (``nats://user:password@host:4222``,
      ``tls://`` for TLS) [``"nats://localhost:4222"``].
    - ``subject``: the subject template, with ``{type}``, ``{tenantid}`` and ``{subject}``
      [``"orders.{type}"``]. A stream must capture the subjects (the publisher never
      creates one).
    - ``stream``: the stream the messages must land in (JetStream refuses them otherwise:
      the ``Nats-Expected-Stream`` header) [any].
    - ``timeout``: seconds one batch may take, end to end: connecting (when there is no
      connection) and the acknowledgement of every message [10].
    - ``connect_options``: keyword arguments passed to ``nats.connect()`` as they are, e.g.
      ``user_credentials`` (a ``.creds`` file), ``nkeys_seed``, ``token``, ``user`` and
      ``password``, ``tls_hostname`` [none].

    Two batches may be in flight at once (:attr:`max_batches_in_flight`): the relay
    claims and hands over the next batch while the acknowledgements of the one before are
    still coming.
    """

    max_batches_in_flight = 2

    def __init__(
        self,
        servers: str | Sequence[str] = DEFAULT_SERVERS,
        subject: str = "orders.{type}",
        stream: str | None = None,
        timeout: float = 10.0,
        connect_options: Mapping[str, Any] | None = None,
    ) -> None:
        import_driver("nats", "nats")
        self._client_module = import_driver("nats.aio.client", "nats")
        self._errors = import_driver("nats.errors", "nats")
        self._js_errors = import_driver("nats.js.errors", "nats")
        self.subject = _checked_template(subject)
        if connect_options is not None and not isinstance(connect_options, Mapping):
            raise ImproperlyConfigured(
                "NatsJetStreamPublisher 'connect_options' must be a dict of nats.connect() "
                "arguments."
            )
        self.servers = [servers] if isinstance(servers, str) else list(servers)
        self.stream = stream
        self.timeout = float(timeout)
        self._connect_options = dict(connect_options or {})
        self._connection: Any = None
        self._connecting = asyncio.Lock()  # bound to the loop on first use
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="django-orders-nats", daemon=True
        )
        self._thread.start()

    # --- the relay's thread ----------------------------------------------------------------

    def publish_batch(self, events: Sequence[dict[str, Any]]) -> list[PublishError | None]:
        return self.start_batch(events).wait()

    def start_batch(self, events: Sequence[dict[str, Any]]) -> InFlight:
        """Hand the batch to the event loop, which writes it at once; ``wait()`` waits
        for its acknowledgements (at most ``timeout`` after this call)."""
        if not events:
            return InFlight([])
        deadline = time.monotonic() + self.timeout
        future = asyncio.run_coroutine_threadsafe(self._publish(events, deadline), self._loop)
        return _Batch(future, len(events), self.timeout)

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        future = asyncio.run_coroutine_threadsafe(self._disconnect(), self._loop)
        try:
            future.result(self.timeout)
        except Exception:
            logger.debug("Closing the NATS connection failed", exc_info=True)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(self.timeout)
        if not self._thread.is_alive():
            self._loop.close()

    # --- the loop's thread -----------------------------------------------------------------

    async def _publish(
        self, events: Sequence[dict[str, Any]], deadline: float
    ) -> list[PublishError | None]:
        try:
            connection = await self._connected(deadline)
        except Exception as exc:
            if time.monotonic() >= deadline:
                error = PublishError(
                    f"NATS timed out: no connection within {self.timeout:g}s", reason=Reason.TIMEOUT
                )
            else:
                error = PublishError(
                    f"NATS unavailable: {type(exc).__name__}: {exc}", reason=Reason.UNAVAILABLE
                )
            return [error for _ in events]
        jetstream = connection.jetstream()
        outcomes = await asyncio.gather(
            *(self._publish_one(jetstream, event, deadline) for event in events),
            return_exceptions=True,
        )
        results: list[PublishError | None] = []
        for outcome in outcomes:
            if isinstance(outcome, BaseException) and not isinstance(outcome, PublishError):
                outcome = self._publish_error(outcome)
            results.append(outcome)
        if any(r is not None and r.reason in (Reason.TIMEOUT, Reason.UNAVAILABLE) for r in results):
            await self._disconnect()  # its state is unknown: the next batch reconnects
        return results

    async def _publish_one(self, jetstream: Any, event: dict[str, Any], deadline: float) -> None:
        subject = self.subject.format_map({name: event.get(name, "") for name in SUBJECT_FIELDS})
        if not _valid_subject(subject):
            raise PublishError(
                f"NATS subject {subject!r} (from {self.subject!r}) is not a valid subject",
                permanent=True,
            )
        headers = {
            "Nats-Msg-Id": str(event["id"]),
            "Content-Type": CONTENT_TYPE,
            **trace_headers(event),
        }
        left = deadline - time.monotonic()
        if left <= 0:
            raise self._errors.TimeoutError
        try:
            await jetstream.publish(
                subject, serialize(event), timeout=left, stream=self.stream, headers=headers
            )
        except self._js_errors.NoStreamResponseError:
            raise await self._no_stream(jetstream, subject) from None

    def _publish_error(self, exc: BaseException) -> PublishError:
        """The :class:`PublishError` for what ``publish()`` raised."""
        errors, js_errors = self._errors, self._js_errors
        text = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, js_errors.APIError):
            # 400: the stream refuses this message (wrong expected stream, too large for
            # the stream, …) and will again; 503 and others: try later.
            permanent = exc.code == 400
            return PublishError(
                f"NATS JetStream refused the message: {exc}",
                permanent=permanent,
                reason=Reason.PERMANENT if permanent else Reason.TRANSIENT,
            )
        if isinstance(exc, errors.MaxPayloadError):
            return PublishError(f"NATS refused the message: {text}", permanent=True)
        if isinstance(exc, errors.BadSubjectError):
            return PublishError(f"NATS refused the subject: {text}", permanent=True)
        if isinstance(exc, asyncio.TimeoutError):
            return PublishError(
                f"NATS timed out: no acknowledgement within {self.timeout:g}s",
                reason=Reason.TIMEOUT,
            )
        if isinstance(exc, errors.Error | OSError | asyncio.CancelledError):
            return PublishError(f"NATS unavailable: {text}", reason=Reason.UNAVAILABLE)
        raise exc

    async def _no_stream(self, jetstream: Any, subject: str) -> PublishError:
        """Nobody answered a publish: permanent when JetStream says no stream captures
        the subject; transient when JetStream itself did not answer (not ready yet after a
        restart, a stream's leader being elected)."""
        try:
            await jetstream.find_stream_name_by_subject(subject)
        except self._js_errors.NotFoundError:
            return PublishError(
                f"NATS JetStream has no stream for subject {subject!r}", permanent=True
            )
        except Exception as exc:
            return PublishError(
                f"NATS JetStream did not answer for subject {subject!r}: "
                f"{type(exc).__name__}: {exc}",
                reason=Reason.UNAVAILABLE,
            )
        return PublishError(
            f"NATS JetStream: the stream for subject {subject!r} did not answer",
            reason=Reason.UNAVAILABLE,
        )

    async def _connected(self, deadline: float) -> Any:
        connection = self._connection
        if connection is not None and connection.is_connected:
            return connection
        async with self._connecting:  # two batches in flight: one connection
            connection = self._connection
            if connection is not None and connection.is_connected:
                return connection
            return await self._connect(deadline)

    async def _connect(self, deadline: float) -> Any:
        await self._disconnect()
        left = deadline - time.monotonic()
        if left <= 0:
            raise self._errors.TimeoutError
        options = {
            "name": CONNECTION_NAME,
            # No reconnecting inside the client: a lost connection fails the batch in
            # flight and the next batch connects anew (waiting is the relay's job, with
            # backoff). A reconnecting client would hold publishes in its buffer instead.
            "allow_reconnect": False,
            # When connecting: each server tried twice at most, without a pause (nats-py
            # reads 0 as "no limit": it would try until the deadline).
            "max_reconnect_attempts": 1,
            "reconnect_time_wait": 0,
            # One log line per error, not nats-py's default traceback.
            "error_cb": _log_error,
            **self._connect_options,
            "servers": self.servers,
            "connect_timeout": left,
        }
        client = self._client_module.Client()
        try:
            await asyncio.wait_for(client.connect(**options), left)
        except BaseException:
            # Cut short (the deadline) in the middle of the handshake, the client keeps
            # its half-open socket unless it is closed.
            await self._close(client)
            raise
        self._connection = client
        return client

    async def _disconnect(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await self._close(connection)

    async def _close(self, client: Any) -> None:
        if client.is_closed:
            return
        try:
            await asyncio.wait_for(client.close(), self.timeout)
        except Exception:
            logger.debug("Closing the NATS connection failed", exc_info=True)


async def _log_error(error: Exception) -> None:
    logger.warning("NATS: %s: %s", type(error).__name__, error)


def _checked_template(template: str) -> str:
    if not isinstance(template, str) or not template:
        raise ImproperlyConfigured("NatsJetStreamPublisher needs a 'subject' template.")
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise ImproperlyConfigured(
            f"NatsJetStreamPublisher 'subject' {template!r} is not a valid template: {exc}"
        ) from exc
    unknown = fields - set(SUBJECT_FIELDS)
    if unknown:
        raise ImproperlyConfigured(
            f"NatsJetStreamPublisher 'subject' {template!r} uses {sorted(unknown)}; a template "
            f"may use {', '.join('{' + f + '}' for f in SUBJECT_FIELDS)}."
        )
    return template


#: Dot-separated non-empty tokens without whitespace, none of them a wildcard (``*``,
#: ``>``). ``\s`` is what ``str.isspace()`` calls whitespace.
_TOKEN = r"(?![*>](?:\.|\Z))[^.\s]+"
_SUBJECT = re.compile(rf"{_TOKEN}(?:\.{_TOKEN})*\Z")


def _valid_subject(subject: str) -> bool:
    """A subject to publish to: dot-separated non-empty tokens, no whitespace, no wildcard
    (NATS "Subject-Based Messaging")."""
    return _SUBJECT.match(subject) is not None
