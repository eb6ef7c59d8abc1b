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
loop (``asyncio.run_coroutine_threadsafe``) and blocks on the result. On the loop every
message of the batch is written before the first acknowledgement is awaited, so a batch
costs about one round trip, not one per event. The acknowledgements come back on one reply
subscription per connection (``<inbox>.*``), each message with a reply subject of its own
under it — the technique of nats-py's ``publish_async`` — and are matched to their batch
by that token: per event a dictionary entry, no request, future or timer of its own (about
half the client's CPU per event of ``js.publish`` per message, docs/benchmarks.md). Per
batch: one wake-up of the loop and one of the relay's thread. ``asyncio.run()`` per batch
would instead open a new connection each time.

The timeout is end to end: connecting (when there is no connection) and every
acknowledgement of the batch share one deadline, enforced on the loop; a batch whose
acknowledgements are not all in by then fails as a timeout (the messages that did arrive
are de-duplicated by their ``Nats-Msg-Id`` when the relay sends them again). Needs the
``nats`` extra (nats-py).

One module past 400 lines, and :class:`NatsJetStreamPublisher` with more methods than a
class here usually has, on purpose: the event loop's thread, the connection, the
acknowledgements' subscription and the deadline are one publisher's policy, each piece
there because of the others (a batch that gives up must drop its tokens and its own
connection); a reader checking what a lost acknowledgement or a stalled server leads to
finds the whole path here.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import itertools
import json
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
#: The ``Status`` header of the server's reply to a message nothing subscribes to (the
#: "no responders" status a client asks for with headers on).
NO_RESPONDERS = "503"
#: A message's outcome while it has no answer.
_NO_ANSWER = object()


class _Acks:
    """The acknowledgements of one batch, on the loop: an outcome per message, set by
    the reply subscription as they arrive (``None``: acknowledged)."""

    def __init__(self, size: int) -> None:
        self.outcomes: list[Any] = [_NO_ANSWER] * size
        self.sent = 0  # messages written and not answered yet
        self._sending = True
        self._done = asyncio.get_running_loop().create_future()

    def answered(self, i: int, outcome: BaseException | None) -> None:
        self.outcomes[i] = outcome
        self.sent -= 1
        if not self.sent and not self._sending and not self._done.done():
            self._done.set_result(None)

    async def all_answered(self) -> None:
        """Every message is written: wait for the answers still to come."""
        self._sending = False
        if self.sent:
            await self._done


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
      ``tls://`` for TLS, ``ws://`` for a WebSocket port: nats-py needs ``aiohttp``)
      [``"nats://localhost:4222"``].
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
        # On the loop: the messages sent and not answered yet (reply token → batch, index)
        # and the prefix of their reply subjects on the connection.
        self._waiting: dict[str, tuple[_Acks, int]] = {}
        self._tokens = itertools.count()
        self._replies = ""
        self._closing: set[asyncio.Future[None]] = set()  # connections _drop() closes
        # The last connections closed, kept referenced a while: asyncio holds tasks weakly,
        # and a closed nats-py client's cancelled subscription reader, unreferenced before
        # the loop has run its cancellation, is destroyed pending — by the garbage
        # collector, on whichever thread it runs (an error under asyncio's debug mode).
        self._retired: collections.deque[Any] = collections.deque(maxlen=8)
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
        future = asyncio.run_coroutine_threadsafe(self._shut_down(), self._loop)
        try:
            future.result(self.timeout)
        except Exception:
            logger.debug("Closing the NATS connection failed", exc_info=True)
        future = asyncio.run_coroutine_threadsafe(_cancel_the_rest(), self._loop)
        try:
            future.result(LOOP_GRACE)
        except Exception:
            logger.debug("Tasks of the NATS client outlived its close", exc_info=True)
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
        acks = _Acks(len(events))
        try:
            async with asyncio.timeout(deadline - time.monotonic()) as timer:
                for i, event in enumerate(events):
                    _check(timer)
                    try:
                        await self._send(connection, event, acks, i)
                    except Exception as exc:  # this message only; the batch goes on
                        acks.outcomes[i] = exc
                _check(timer)
                await acks.all_answered()
        except TimeoutError:
            pass  # the events without an acknowledgement fail as timeouts (below)
        finally:
            if acks.sent:  # an acknowledgement that comes later finds nobody waiting for it
                for token in [t for t, (batch, _) in self._waiting.items() if batch is acks]:
                    del self._waiting[token]
        no_stream: dict[str, PublishError] = {}  # JetStream asked once per subject
        results = [await self._result(connection, event, outcome, no_stream, deadline)
                   for event, outcome in zip(events, acks.outcomes, strict=True)]  # fmt: skip
        if any(r is not None and r.reason in (Reason.TIMEOUT, Reason.UNAVAILABLE) for r in results):
            # Its state is unknown: the next batch reconnects. This batch's connection
            # only: another batch may have connected anew since, and be waiting on it.
            self._drop(connection)
        return results

    async def _send(self, connection: Any, event: dict[str, Any], acks: _Acks, i: int) -> None:
        """Write the event's message, its ``PubAck`` to come to the connection's reply
        subscription as ``acks``'s ``i``-th."""
        subject = self._subject(event)
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
        if self.stream is not None:
            headers["Nats-Expected-Stream"] = self.stream
        payload = serialize(event)
        token = str(next(self._tokens))
        self._waiting[token] = (acks, i)
        acks.sent += 1
        try:
            await connection.publish(subject, payload, reply=self._replies + token, headers=headers)
        except BaseException:
            if self._waiting.pop(token, None) is not None:  # not answered, nor given up
                acks.sent -= 1
            raise

    async def _on_reply(self, message: Any) -> None:
        """A reply to a message of ours: JetStream's ``PubAck`` (or its error), or the
        server's "no responders" when nothing captures the subject."""
        entry = self._waiting.pop(message.subject.rpartition(".")[2], None)
        if entry is None:
            return  # its batch gave up at its deadline
        acks, i = entry
        outcome: BaseException | None
        if message.headers and message.headers.get("Status") == NO_RESPONDERS:
            outcome = self._js_errors.NoStreamResponseError()
        else:
            try:
                reply = json.loads(message.data)
                error = reply.get("error")
                if error is None and "stream" not in reply:
                    raise ValueError
            except (ValueError, AttributeError, RecursionError):  # nested too deep
                outcome = self._errors.Error(
                    f"not a JetStream acknowledgement: {message.data[:200]!r}"
                )
            else:
                outcome = None if error is None else self._api_error(error)
        acks.answered(i, outcome)

    def _api_error(self, error: Any) -> BaseException:
        """nats-py's exception for JetStream's error (``APIError.from_error`` raises it);
        an error that is not JetStream's shape, as a reply that is no acknowledgement."""
        try:
            self._js_errors.APIError.from_error(error)
        except self._js_errors.APIError as exc:
            return exc
        except (KeyError, TypeError):
            pass
        return self._errors.Error(f"not a JetStream acknowledgement: error {error!r}")

    async def _result(
        self,
        connection: Any,
        event: dict[str, Any],
        outcome: Any,
        no_stream: dict[str, PublishError],
        deadline: float,
    ) -> PublishError | None:
        """The event's result from its outcome: ``None`` (acknowledged), no answer by the
        deadline (a timeout), or what went wrong."""
        if outcome is None:
            return None
        if outcome is _NO_ANSWER:
            outcome = TimeoutError()
        if isinstance(outcome, PublishError):
            return outcome
        if isinstance(outcome, self._js_errors.NoStreamResponseError):
            subject = self._subject(event)
            if subject not in no_stream:
                no_stream[subject] = await self._no_stream(connection, subject, deadline)
            return no_stream[subject]
        return self._publish_error(outcome)

    def _subject(self, event: dict[str, Any]) -> str:
        return self.subject.format_map({name: event.get(name, "") for name in SUBJECT_FIELDS})

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

    async def _no_stream(self, connection: Any, subject: str, deadline: float) -> PublishError:
        """Nobody answered a publish: permanent when JetStream says no stream captures
        the subject; transient when JetStream itself did not answer by the batch's
        deadline (not ready yet after a restart, a stream's leader being elected)."""
        try:
            # nats-py's TimeoutError past the deadline (timeout 0 would mean its default).
            left = max(deadline - time.monotonic(), 0.001)
            await connection.jetstream(timeout=left).find_stream_name_by_subject(subject)
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
        # One reply subscription for every message's PubAck, each message's own reply
        # subject under it: nats-py's request() per message would make a future, a
        # timer task and a PubAck object for each (publish_async is the same technique,
        # but leaves its future pending forever on a JetStream error: nats.py#985).
        replies = client.new_inbox()
        await client.subscribe(f"{replies}.*", cb=self._on_reply)
        self._replies = f"{replies}."
        self._connection = client
        return client

    def _drop(self, connection: Any) -> None:
        """Forget ``connection`` and close it in the background: closing waits (up to
        ``timeout``) for the socket to take what nats-py still holds, which a server
        that reads nothing never does; the batch's results need not wait for that."""
        if self._connection is connection:
            self._connection = None
        closing = asyncio.ensure_future(self._close(connection))
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)

    async def _disconnect(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await self._close(connection)

    async def _shut_down(self) -> None:
        """:meth:`close`: the connection, and those :meth:`_drop` is still closing."""
        await self._disconnect()
        if self._closing:
            await asyncio.wait(self._closing)  # each bounded by timeout

    async def _close(self, client: Any) -> None:
        self._retired.append(client)
        # Found before close(): nats-py's WebSocket transport forgets its socket once its
        # own close is done, and that socket may still be closing.
        sockets = _sockets(client)
        try:
            if not client.is_closed:
                await asyncio.wait_for(client.close(), self.timeout)
        except Exception:
            logger.debug("Closing the NATS connection failed", exc_info=True)
        finally:  # cancelled too: close() cuts off what outlives its bound
            for socket in sockets:
                socket.abort()  # let go on the loop's next turn


def _sockets(client: Any) -> list[asyncio.WriteTransport]:
    """The asyncio transports of ``client``'s socket, to let go of with ``abort()``
    whatever its peer has not taken yet. nats-py closes them gracefully: asyncio keeps a
    closing socket until its write buffer drains, which a server that reads nothing
    (paused, or gone without a reset) never lets happen, or until a loop turn that a
    stopping loop may not run — and the transport, collected later, warns "unclosed
    transport". ``abort()`` on a socket already let go does nothing."""
    transport = getattr(client, "_transport", None)
    writers = [
        getattr(transport, "_io_writer", None),  # TCP: the TLS one (or the only one),
        getattr(transport, "_bare_io_writer", None),  # and the one under it
        getattr(getattr(transport, "_ws", None), "_writer", None),  # WebSocket: aiohttp's
    ]
    found = (getattr(writer, "transport", None) for writer in writers if writer is not None)
    return [transport for transport in found if transport is not None]


async def _cancel_the_rest() -> None:
    """Cancel what is still pending on the loop: the tasks nats-py leaves behind when a
    connection's ``close()`` was cut off at its bound (a server that reads nothing keeps
    it flushing), e.g. a subscription's reader. The loop then closes with nothing
    pending — no "Task was destroyed but it is pending!" at exit."""
    current = asyncio.current_task()
    rest = [task for task in asyncio.all_tasks() if task is not current]
    for task in rest:
        task.cancel()
    if rest:
        await asyncio.wait(rest, timeout=LOOP_GRACE / 2)
    # A cancelled _close() aborted its sockets as it ended (its finally): the loop lets
    # go of them on its next turn, before close() stops it.
    await asyncio.sleep(0)


def _check(timer: asyncio.Timeout) -> None:
    """Raise ``TimeoutError`` once ``timer`` has expired. Its cancellation alone does not
    stop the batch: nats-py swallows it in a forced flush (``Client._flush_pending``
    catches ``CancelledError``), where ``publish()`` waits while the server reads nothing
    and nats-py holds more than its ``pending_size``, and the batch would go on sending
    and then wait for acknowledgements with no deadline left."""
    if timer.expired():
        raise TimeoutError


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
