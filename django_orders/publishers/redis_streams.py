"""Redis Streams publisher: one ``XADD`` per event, a batch in one pipeline.

Each entry has the fields ``id`` (the event id), ``type``, ``tenantid`` and ``event`` (the
CloudEvent JSON, the same bytes the other publishers send), and ``traceparent`` /
``tracestate`` for an event recorded under a trace (W3C Trace Context). Consumers read with
``XREAD``/``XREADGROUP`` and dedupe on ``id``: a retried batch may add an entry twice.

A batch is one pipeline without ``MULTI`` (one round trip, no transaction: each ``XADD``
succeeds or fails on its own and gets its own result). An entry counts as published when
Redis answered its ``XADD``, which makes it exactly as durable as the server is configured
to be (``appendonly yes`` with ``appendfsync always`` to survive a crash; replicas via
``WAIT``/``min-replicas-to-write``). Needs the ``redis`` extra (redis-py).

``timeout`` bounds a whole batch: redis-py's ``socket_timeout`` bounds each read, so a
server that answers slowly, reply after reply or byte after byte, could hold a batch for
many times the timeout. The batch runs under a deadline (:mod:`django_orders.publishers.
deadline`); when it passes, the pool's connections are disconnected from the watchdog's
thread (``ConnectionPool.disconnect(inuse_connections=True)``, which redis-py documents as
safe for connections in use by other threads) and the batch fails as a timeout.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from django_orders.cloudevents import serialize, trace_headers
from django_orders.publishers.base import Publisher, PublishError, Reason, import_driver
from django_orders.publishers.deadline import Watchdog

DEFAULT_URL = "redis://localhost:6379/0"


class RedisStreamPublisher(Publisher):
    """Appends CloudEvents to a Redis stream.

    Options:

    - ``url``: ``redis://[[user]:password@]host:port/db`` (``rediss://`` for TLS,
      ``unix://`` for a socket) [the local server, database 0].
    - ``stream``: the stream's key [``"orders.events"``].
    - ``maxlen``: cap the stream at about this many entries (``XADD … MAXLEN ~ n``, the
      cheap approximate trim) [none]. Trimming drops the oldest entries whether or not a
      consumer has read them: leave it unset unless every consumer keeps up.
    - ``timeout``: seconds one batch may take, end to end: connecting, sending and reading
      every reply [10].
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        stream: str = "orders.events",
        maxlen: int | None = None,
        timeout: float = 10.0,
    ) -> None:
        redis = import_driver("redis", "redis")
        backoff_module = import_driver("redis.backoff", "redis")
        retry_module = import_driver("redis.retry", "redis")
        if not stream:
            raise ImproperlyConfigured("RedisStreamPublisher needs a 'stream' key.")
        if maxlen is not None and (
            isinstance(maxlen, bool) or not isinstance(maxlen, int) or maxlen < 1
        ):
            raise ImproperlyConfigured(
                f"RedisStreamPublisher 'maxlen' must be a positive integer or None, not {maxlen!r}."
            )
        self.stream = stream
        self.maxlen = maxlen
        self.timeout = float(timeout)
        self._errors = (redis.ConnectionError, redis.TimeoutError)
        self._redis_error = redis.RedisError
        try:
            self._client = redis.Redis.from_url(
                url,
                socket_timeout=self.timeout,
                socket_connect_timeout=self.timeout,
                # No retry inside a batch: a retry would start over after the deadline's
                # interrupt, and waiting is the relay's job (backoff with jitter). A pooled
                # connection the server closed while idle is replaced when it is taken
                # from the pool (redis-py checks it first); one that breaks in the middle of
                # a batch fails the batch, which the relay retries (entries added before the
                # break are added again: consumers dedupe on ``id``).
                retry=retry_module.Retry(backoff_module.NoBackoff(), 0),
            )
        except ValueError as exc:
            raise ImproperlyConfigured(f"RedisStreamPublisher 'url' is invalid: {exc}") from exc
        self._watchdog = Watchdog("django-orders-redis-deadline")

    def publish_batch(self, events: Sequence[dict[str, Any]]) -> list[PublishError | None]:
        if not events:
            return []
        pipeline = self._client.pipeline(transaction=False)
        for event in events:
            pipeline.xadd(
                self.stream,
                {
                    "id": str(event["id"]),
                    "type": event["type"],
                    "tenantid": event.get("tenantid") or "",
                    "event": serialize(event),
                    **trace_headers(event),
                },
                maxlen=self.maxlen,
                approximate=True,
            )
        deadline = time.monotonic() + self.timeout
        failure: Exception | None = None
        with self._watchdog.guard(deadline, self._interrupt) as guard:
            try:
                replies = pipeline.execute(raise_on_error=False)
            except Exception as exc:
                failure = exc
            finally:
                pipeline.reset()
        if failure is not None:
            # Some entries may have been added before the connection broke (or was cut at
            # the deadline); they are added again on retry (at-least-once).
            if guard.expired:
                error = f"Redis timed out: no complete answer within {self.timeout:g}s"
                reason = Reason.TIMEOUT
            elif isinstance(failure, self._errors):
                error = f"Redis unavailable: {type(failure).__name__}: {failure}"
                reason = Reason.UNAVAILABLE
            elif isinstance(failure, self._redis_error):
                error = f"Redis error: {type(failure).__name__}: {failure}"
                reason = Reason.TRANSIENT
            else:
                raise failure
            return [PublishError(error, reason=reason) for _ in events]
        # Every reply was read, in time or just past it: they are the outcome either way.
        return [
            PublishError(f"Redis refused XADD: {type(reply).__name__}: {reply}")
            if isinstance(reply, Exception)
            else None
            for reply in replies
        ]

    def _interrupt(self) -> None:
        """At the deadline (watchdog thread): cut the connection the batch is using."""
        self._client.connection_pool.disconnect(inuse_connections=True)

    def close(self) -> None:
        self._client.close()
        self._watchdog.close()
