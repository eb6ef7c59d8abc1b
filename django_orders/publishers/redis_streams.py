"""Redis Streams publisher: one ``XADD`` per event, a batch in one pipeline.

Each entry has the fields ``id`` (the event id), ``type``, ``tenantid`` and ``event`` (the
CloudEvent JSON, the same bytes the other publishers send). Consumers read with
``XREAD``/``XREADGROUP`` and dedupe on ``id``: a retried batch may add an entry twice.

A batch is one pipeline without ``MULTI`` (one round trip, no transaction: each ``XADD``
succeeds or fails on its own and gets its own result). An entry counts as published when
Redis answered its ``XADD``, which makes it exactly as durable as the server is configured
to be (``appendonly yes`` with ``appendfsync always`` to survive a crash; replicas via
``WAIT``/``min-replicas-to-write``). Needs the ``redis`` extra (redis-py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from django_orders.cloudevents import serialize
from django_orders.publishers.base import Publisher, PublishError, import_driver

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
    - ``timeout``: seconds for connecting and for each answer [10].
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
                # One immediate retry: it replaces a pooled connection the server dropped
                # (a restart) without failing the batch. Longer waits are the relay's job
                # (backoff with jitter), not a blocking sleep in here. A retried pipeline may
                # add an entry twice; consumers dedupe on ``id`` (at-least-once).
                retry=retry_module.Retry(backoff_module.NoBackoff(), 1),
            )
        except ValueError as exc:
            raise ImproperlyConfigured(f"RedisStreamPublisher 'url' is invalid: {exc}") from exc

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
                },
                maxlen=self.maxlen,
                approximate=True,
            )
        try:
            replies = pipeline.execute(raise_on_error=False)
        except self._errors as exc:
            # Some entries may have been added before the connection broke; they will be
            # added again on retry (at-least-once).
            return [PublishError(f"Redis unavailable: {type(exc).__name__}: {exc}") for _ in events]
        except self._redis_error as exc:
            return [PublishError(f"Redis error: {type(exc).__name__}: {exc}") for _ in events]
        finally:
            pipeline.reset()
        return [
            PublishError(f"Redis refused XADD: {type(reply).__name__}: {reply}")
            if isinstance(reply, Exception)
            else None
            for reply in replies
        ]

    def publish(self, event: dict[str, Any]) -> None:
        (error,) = self.publish_batch([event])
        if error is not None:
            raise error

    def close(self) -> None:
        self._client.close()
