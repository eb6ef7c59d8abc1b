"""Kafka publisher: an idempotent producer (``acks=all``) through confluent-kafka (librdkafka).

Each event is one record on one topic, keyed by the aggregate id (the CloudEvent's
``subject``): Kafka keeps the records of one key in one partition, in the order they were
produced, so an order's events reach its consumers in version order. The record follows
the CloudEvents Kafka protocol binding: in structured mode (the default) the value is the
CloudEvent JSON (the same bytes the other publishers send) with a ``content-type:
application/cloudevents+json`` header; in binary mode the value is ``data`` alone, with
``content-type: application/json`` and one ``ce_<attribute>`` header per attribute. An
event recorded under a trace also has ``traceparent`` / ``tracestate`` headers (W3C Trace
Context), where OpenTelemetry's Kafka instrumentations look for them.

An event counts as published only when its delivery report says the record was written:
with ``acks=all`` that is once every in-sync replica has it. The producer is idempotent
(``enable.idempotence``): librdkafka's own retries of a request never duplicate nor
reorder records in a partition. The relay's retries of a failed batch may still produce an
event twice: consumers dedupe on the CloudEvent ``id``, as with every publisher.

A batch is handed to librdkafka at once (``produce()`` only queues a record) and its
delivery reports come back as the broker answers, so the records of a batch are in flight
together. While a batch is being produced its records linger (``linger.ms`` 5), so that it
goes in one produce request per partition rather than a few records a request; when the
relay waits for a batch, a short ``flush()`` sends whatever lingers at once.
:meth:`KafkaPublisher.start_batch` returns at once (within a millisecond); two batches may
be in flight (:attr:`KafkaPublisher.max_batches_in_flight`). The timeout is end to end without a
watchdog thread: librdkafka's ``message.timeout.ms`` (set to the publisher's ``timeout``)
bounds each record from ``produce()`` to its delivery report, however the broker answers —
slowly, partially or not at all — and reports the record as timed out then.

Needs the ``kafka`` extra (confluent-kafka).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from django_orders.cloudevents import CONTENT_TYPE, serialize, trace_headers
from django_orders.publishers.base import InFlight, Publisher, PublishError, Reason, import_driver

logger = logging.getLogger(__name__)

CLIENT_ID = "django-orders-relay"
#: The headers of a structured-mode record (and its trace context, if any).
STRUCTURED_HEADERS = [("content-type", CONTENT_TYPE.encode())]
MODES = ("structured", "binary")
#: librdkafka properties the publisher sets and a ``config`` may not weaken: what the
#: delivery guarantee rests on.
REQUIRED = {"enable.idempotence": True, "acks": "all"}
#: Seconds past a batch's deadline that :meth:`_Batch.wait` still polls for delivery
#: reports: librdkafka times records out on its own timer, a little after the deadline.
REPORT_GRACE = 1.0
#: librdkafka's ``linger.ms``: how long a record may wait for more to share its request.
#: It only has to cover the ``produce()`` calls of one batch (~20 µs each): when the
#: relay waits for a batch, :meth:`_Batch.wait` sends what is queued (``flush()``
#: overrides ``linger.ms`` for as long as it runs, librdkafka ≥ 1.8).
LINGER_MS = 5
#: Seconds of a ``flush()`` that sends what is queued (:meth:`_Batch.send_now`). It
#: returns when every record of the producer is reported — the next batch's too — or
#: after this long: it only has to last until librdkafka's threads have seen it.
SEND_NOW = 0.001
#: Seconds without a delivery report after which :meth:`_Batch.wait` sends again.
SEND_AGAIN = 0.05
#: A batch of fewer records is sent as soon as it is produced (:meth:`_Batch.send_now`),
#: as is one produced while nothing else is in flight: the relay is not busy, and no other
#: batch's wait follows soon (a batch of one would otherwise wait for the next claim).
SMALL_BATCH = 10
#: Broker answers that will be the same on a retry: the event is parked as dead.
PERMANENT_ERRORS = frozenset(
    {
        "UNKNOWN_TOPIC_OR_PART",
        "_UNKNOWN_TOPIC",
        "_UNKNOWN_PARTITION",
        "TOPIC_AUTHORIZATION_FAILED",
        "TOPIC_EXCEPTION",  # an invalid topic name
        "MSG_SIZE_TOO_LARGE",
        "_MSG_SIZE_TOO_LARGE",
        "RECORD_LIST_TOO_LARGE",
        "INVALID_RECORD",
        "POLICY_VIOLATION",
        "_INVALID_ARG",
    }
)
TIMEOUT_ERRORS = frozenset({"_MSG_TIMED_OUT", "_TIMED_OUT", "REQUEST_TIMED_OUT"})
UNAVAILABLE_ERRORS = frozenset(
    {
        "_TRANSPORT",
        "_ALL_BROKERS_DOWN",
        "_RESOLVE",
        "NETWORK_EXCEPTION",
        "NOT_LEADER_FOR_PARTITION",
        "LEADER_NOT_AVAILABLE",
        "NOT_ENOUGH_REPLICAS",
        "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
        "BROKER_NOT_AVAILABLE",
    }
)


class KafkaPublisher(Publisher):
    """Produces CloudEvents to a Kafka topic, one record per event keyed by its order.

    Options:

    - ``bootstrap_servers``: ``host:port[,host:port…]`` [``"localhost:9092"``].
    - ``topic``: the topic; it must exist (the publisher never creates it: a topic made
      by auto-creation gets the broker's default partition count and replication)
      [``"orders.events"``].
    - ``mode``: ``"structured"`` (the CloudEvent JSON as the value) or ``"binary"``
      (``data`` as the value, attributes as ``ce_`` headers) [``"structured"``].
    - ``timeout``: seconds one batch may take, end to end, from ``produce()`` to the last
      delivery report (librdkafka's ``message.timeout.ms``) [10].
    - ``config``: librdkafka properties passed to the producer as they are, e.g. the
      security ones (``security.protocol``, ``sasl.mechanism``, ``sasl.username``,
      ``sasl.password``, ``ssl.ca.location``, …), ``compression.type`` or ``linger.ms``
      (5 here; it only holds a batch while it is being produced) [none].
      ``enable.idempotence`` and ``acks=all`` cannot be turned off.
    """

    max_batches_in_flight = 2

    def __init__(
        self,
        bootstrap_servers: str = "localhost:9092",
        topic: str = "orders.events",
        mode: str = "structured",
        timeout: float = 10.0,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        self._kafka = import_driver("confluent_kafka", "kafka")
        if not topic or not isinstance(topic, str):
            raise ImproperlyConfigured("KafkaPublisher needs a 'topic' name.")
        if mode not in MODES:
            raise ImproperlyConfigured(
                f"KafkaPublisher 'mode' must be 'structured' or 'binary', not {mode!r}."
            )
        if config is not None and not isinstance(config, Mapping):
            raise ImproperlyConfigured("KafkaPublisher 'config' must be a dict of properties.")
        config = dict(config or {})
        for name, value in REQUIRED.items():
            if name in config and str(config[name]).lower() not in {str(value).lower(), "-1"}:
                raise ImproperlyConfigured(
                    f"KafkaPublisher sets {name}={value} (the delivery guarantee rests on "
                    f"it); 'config' cannot change it to {config[name]!r}."
                )
        self.topic = topic
        self.mode = mode
        self.timeout = float(timeout)
        timeout_ms = max(1, round(self.timeout * 1000))
        self._config: dict[str, Any] = {
            "bootstrap.servers": bootstrap_servers,
            "client.id": CLIENT_ID,
            # Kafka's Java client hashes keys with murmur2: the same key lands in the same
            # partition whichever client produced it (librdkafka's default is CRC32).
            "partitioner": "murmur2_random",
            # Never create the topic as a side effect of producing to it (see ``topic``).
            "allow.auto.create.topics": False,
            # While a batch is being produced, its records wait for the rest of it (one
            # request per partition instead of one per few records, each a request the
            # broker answers); the moment the relay waits for a batch, the wait overrides
            # this (_Batch.wait), so a batch is never held back once it is complete.
            "linger.ms": LINGER_MS,
            # librdkafka's log lines through Python logging, not its own stderr.
            "logger": logger,
            # A topic the cluster says does not exist fails its records this long after
            # the first produce (librdkafka waits 30 s by default, longer than a batch).
            "topic.metadata.propagation.max.ms": min(30_000, max(1, timeout_ms // 2)),
            **config,
            **REQUIRED,
            # Each record's delivery report comes within the timeout of its produce().
            "message.timeout.ms": timeout_ms,
            "error_cb": self._on_error,
        }
        self._lock = threading.Lock()
        # The last client-level error librdkafka reported (error_cb) and when.
        self._last_error: tuple[float, Any] | None = None
        self._producer = self._new_producer()
        # Set when the producer is to be replaced before the next batch (see _retire).
        self._replace = False
        # Replaced producers with records still to report (kept until they have none).
        self._retired: list[Any] = []

    def _new_producer(self) -> Any:
        try:
            return self._kafka.Producer(self._config)
        except self._kafka.KafkaException as exc:
            raise ImproperlyConfigured(f"KafkaPublisher 'config' is invalid: {exc}") from exc

    def _retire(self) -> None:
        """Replace the producer (under the lock, before a batch).

        Done after a batch with a record that failed for any reason but a permanent one,
        and after a fatal error: librdkafka's idempotent producer keeps per-partition
        sequence state that a broker which lost it (restored from scratch, or a
        memory-only broker restarted) rejects again and again (``UNKNOWN_PRODUCER_ID``),
        and a producer that failed fatally refuses every record; a new producer starts
        from a new producer id.

        The old producer is not purged: a failed record has been reported, so librdkafka
        holds none of the failed batch's records any more; what it still holds belongs to
        the other batch in flight (other orders), which finishes on it. (Purging it would
        fail that batch, which would replace the new producer in turn, and so on.)
        """
        old, self._producer = self._producer, self._new_producer()
        self._replace = False
        self._retired.append(old)
        for producer in self._retired:
            producer.poll(0)  # serve what it has reported meanwhile
        self._retired = [producer for producer in self._retired if len(producer) > 0]

    def _failed_on(self, producer: Any) -> None:
        """A batch sent with ``producer`` had a record fail: replace it before the next
        batch, unless it has been replaced already."""
        with self._lock:
            if producer is self._producer:
                self._replace = True

    # --- sending ---------------------------------------------------------------------------

    def publish_batch(self, events: Sequence[dict[str, Any]]) -> list[PublishError | None]:
        return self.start_batch(events).wait()

    def start_batch(self, events: Sequence[dict[str, Any]]) -> InFlight:
        """Queue every record of the batch with librdkafka; ``wait()`` collects their
        delivery reports (at most ``timeout`` after this call)."""
        if not events:
            return InFlight([])
        with self._lock:
            if self._replace:
                self._retire()
            producer = self._producer
        batch = _Batch(self, producer, len(events), time.monotonic() + self.timeout)
        # A relay that is not busy — nothing else in flight, or a batch this small (its
        # claim found fewer events than it asked for) — has no other batch's wait coming
        # soon to send this one: it goes now instead of after the linger.
        idle = len(events) < SMALL_BATCH or len(producer) == 0
        for index, event in enumerate(events):
            try:
                value, headers = self._record(event)
                producer.produce(
                    self.topic,
                    value=value,
                    key=str(event["subject"]).encode(),
                    headers=headers,
                    on_delivery=batch.reporter(index),
                )
            except BufferError as exc:  # the producer's queue is full (queue.buffering.max.*)
                batch.settle(index, PublishError(f"Kafka producer queue full: {exc}"))
            except self._kafka.KafkaException as exc:
                batch.settle(index, self._error(exc.args[0]))
        if idle:
            batch.send_now()
        return batch

    def _record(self, event: dict[str, Any]) -> tuple[bytes, list[tuple[str, bytes]]]:
        """The record's value and headers (CloudEvents Kafka protocol binding)."""
        context = trace_headers(event)
        trace = [(name, value.encode()) for name, value in context.items()] if context else []
        if self.mode == "structured":
            # produce() copies the headers: an event without trace context shares the list.
            return serialize(event), [*STRUCTURED_HEADERS, *trace] if trace else STRUCTURED_HEADERS
        headers = [("content-type", str(event.get("datacontenttype", "")).encode())]
        for name, value in event.items():
            if name not in ("data", "datacontenttype"):
                headers.append((f"ce_{name}", _header_value(value)))
        data = event.get("data")
        value = b"" if data is None else serialize(data)
        return value, [*headers, *trace]

    # --- reports ---------------------------------------------------------------------------

    def _on_error(self, error: Any) -> None:
        """librdkafka's client-level errors (served by ``poll()``, on the relay's thread)."""
        self._last_error = (time.monotonic(), error)
        if error.fatal():
            # The idempotent producer cannot go on (e.g. a broker lost its producer state):
            # the next batch starts with a new producer; this batch's records are reported
            # failed by librdkafka.
            logger.error("Kafka producer failed fatally, replacing it: %s", error)
            self._replace = True
        else:
            logger.warning("Kafka: %s", error)

    def _error(self, error: Any) -> PublishError:
        """The :class:`PublishError` for a delivery report's ``KafkaError``."""
        name = error.name()
        if error.fatal():  # also raised by produce() itself, before any poll() serves
            self._replace = True  # error_cb
            return PublishError(f"Kafka producer failed fatally: {name}: {error.str()}")
        text = f"Kafka refused the record: {name}: {error.str()}"
        if name in PERMANENT_ERRORS and not error.retriable():
            return PublishError(text, permanent=True)
        if name in TIMEOUT_ERRORS:
            # Timed out because no broker could be reached (librdkafka said so meanwhile)?
            recent = self._last_error
            if (
                recent is not None
                and recent[0] > time.monotonic() - self.timeout - REPORT_GRACE
                and recent[1].name() in UNAVAILABLE_ERRORS
            ):
                return PublishError(
                    f"Kafka unavailable: no delivery report within {self.timeout:g}s "
                    f"({recent[1].str()})",
                    reason=Reason.UNAVAILABLE,
                )
            return PublishError(
                f"Kafka timed out: no delivery report within {self.timeout:g}s",
                reason=Reason.TIMEOUT,
            )
        if name in UNAVAILABLE_ERRORS:
            return PublishError(
                f"Kafka unavailable: {name}: {error.str()}", reason=Reason.UNAVAILABLE
            )
        return PublishError(text, reason=Reason.TRANSIENT)

    def close(self) -> None:
        with self._lock:
            producers = [self._producer, *self._retired]
            self._retired = []
        # Every batch was waited for; serve what is left (late reports) and let go.
        for producer in producers:
            producer.flush(0)


def _header_value(value: Any) -> bytes:
    """A CloudEvents attribute as a Kafka header: its canonical string, UTF-8."""
    if isinstance(value, bool):
        return b"true" if value else b"false"
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value).encode()


class _Batch(InFlight):
    """One batch's delivery reports, collected by polling the producer in :meth:`wait`."""

    def __init__(
        self, publisher: KafkaPublisher, producer: Any, size: int, deadline: float
    ) -> None:
        super().__init__([None] * size)
        self._publisher = publisher
        self._producer = producer
        self._deadline = deadline
        self._pending = set(range(size))

    def reporter(self, index: int) -> Any:
        pending = self._pending

        def on_delivery(error: Any, message: Any) -> None:
            if error is None:  # its result is None already
                pending.discard(index)
            else:
                self.settle(index, self._publisher._error(error))

        return on_delivery

    def settle(self, index: int, result: PublishError | None) -> None:
        if index in self._pending:
            self._pending.discard(index)
            self._results[index] = result

    def send_now(self) -> None:
        """While a record of this batch is unreported, ``flush()`` for at most
        :data:`SEND_NOW` seconds: for as long as it runs, librdkafka sends every queued
        record without lingering (and serves reports)."""
        left = self._deadline + REPORT_GRACE - time.monotonic()
        if self._pending and left > 0:
            self._producer.flush(min(left, SEND_NOW))

    def wait(self) -> list[PublishError | None]:
        """Serve delivery reports (this batch's and any other's) until every record of
        this batch has one; librdkafka sends each by ``message.timeout.ms``.

        Nothing waited for lingers: first :meth:`send_now` sends this batch's records if
        they still wait, and the next batch's, produced meanwhile; then ``poll()`` serves
        the reports, and after :data:`SEND_AGAIN` seconds with none, :meth:`send_now`
        again — for records that could not go at the first one (the producer still
        starting, a retry)."""
        self.send_now()
        while self._pending:
            left = self._deadline + REPORT_GRACE - time.monotonic()
            if left <= 0:
                break
            if not self._producer.poll(min(left, SEND_AGAIN)):
                self.send_now()
        for index in list(self._pending):  # pragma: no cover - librdkafka missed its timer
            self.settle(
                index,
                PublishError(
                    f"Kafka timed out: no delivery report within {self._publisher.timeout:g}s",
                    reason=Reason.TIMEOUT,
                ),
            )
        if any(r is not None and not r.permanent for r in self._results):
            self._publisher._failed_on(self._producer)
        return self._results
