"""Webhook publisher: HTTP POST of each CloudEvent, signed per Standard Webhooks.

The body is the CloudEvent in structured mode (``Content-Type:
application/cloudevents+json``). The headers follow the Standard Webhooks spec
(https://www.standardwebhooks.com, "Signature scheme" and "Webhook headers"):

- ``webhook-id``: the event id, the same on every redelivery (consumers dedupe on it);
- ``webhook-timestamp``: the attempt's time, integer Unix seconds;
- ``webhook-signature``: ``v1,`` + base64 of HMAC-SHA256(key, ``{id}.{timestamp}.{body}``),
  one per configured secret, space-separated (zero-downtime key rotation);
- ``traceparent`` / ``tracestate`` (W3C Trace Context) for an event recorded under a trace.

Success is any 2xx answer. A 4xx other than 408, 425 and 429 is permanent (the receiver
refuses this event and will again: the relay parks it at once); everything else - 3xx
(redirects are not followed, as the spec advises), 408/425/429, 5xx, timeouts, refused or
dropped connections - is retried, and ``Retry-After`` (seconds or an HTTP-date) is passed
on to the relay.

``timeout`` is the longest one event's request may take, end to end: connecting, sending
and reading the whole answer. A socket timeout alone bounds each read, not the answer (a
receiver sending one byte a second would never trip it), so each request runs under a
deadline kept by a watchdog thread (:mod:`django_orders.publishers.deadline`) that shuts
the socket down when the deadline passes; the connection is then discarded.

The HTTP client is the standard library's ``http.client``: persistent (keep-alive)
connections in a small pool, reused across requests and batches. It costs a fraction of
the CPU per request of the feature-rich clients (measured here: about twice the requests
per second of httpx on one core), and a relay is CPU-bound on exactly that. A batch is
sent concurrently on a small thread pool: the relay puts at most one event per order in a
batch, so this never reorders the events of an order. Needs no extra.

One module, past 400 lines, on purpose: the signing, the classification of answers, the
connection pool and the deadline are one publisher's policy, small pieces that each
exist for the others; a reader checking what an answer or a timeout leads to finds the
whole path here.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import email.utils
import hashlib
import hmac
import http.client
import logging
import math
import ssl
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

import django_orders
from django_orders.cloudevents import CONTENT_TYPE, serialize, trace_headers
from django_orders.publishers.base import NotSent, Publisher, PublishError, Reason
from django_orders.publishers.deadline import SocketInterrupt, Watchdog, time_left

logger = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"
# RFC 9110 §15.5.9 (408), RFC 8470 §5.2 (425), RFC 6585 §4 (429): "try again later".
RETRYABLE_CLIENT_ERRORS = frozenset({408, 425, 429})
# How much of a refusing answer's body ends up in the event's last_error.
ERROR_BODY_CHARS = 200
# A longer answer is not read to its end; its connection is closed instead of reused.
MAX_RESPONSE_BYTES = 1 << 20
# Errors of a kept-alive connection the receiver closed meanwhile (its idle timeout).
STALE_CONNECTION_ERRORS = (
    http.client.RemoteDisconnected,
    ConnectionResetError,
    ConnectionAbortedError,
    BrokenPipeError,
)


def signing_key(secret: str) -> bytes:
    """The HMAC key of a secret: ``whsec_<base64>`` decodes, any other text is UTF-8."""
    if not isinstance(secret, str) or not secret:
        raise ImproperlyConfigured("WebhookPublisher needs a non-empty 'secret'.")
    if secret.startswith(SECRET_PREFIX):
        try:
            return base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
        except binascii.Error as exc:
            raise ImproperlyConfigured(
                "WebhookPublisher 'secret' starts with 'whsec_' but the rest is not base64."
            ) from exc
    return secret.encode("utf-8")


def is_standard_secret(secret: object) -> bool:
    """Whether ``secret`` is in the Standard Webhooks form, ``whsec_`` + base64 of a key.

    Such a secret is what verifiers expect as a string (the official libraries decode it);
    any other text must be handed to them as bytes (system check ``django_orders.W002``).
    """
    if not isinstance(secret, str) or not secret.startswith(SECRET_PREFIX):
        return False
    try:
        return bool(signing_key(secret))
    except ImproperlyConfigured:
        return False


def sign(keys: Sequence[bytes], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value: ``v1,<base64>`` per key, space-separated."""
    content = b"%s.%d.%s" % (msg_id.encode("utf-8"), timestamp, body)
    return " ".join(
        "v1," + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
        for key in keys
    )


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (RFC 9110 §10.2.3), or ``None``.

    Either delay-seconds or an HTTP-date; a date in the past means "now" (0).
    """
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(int(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" dates parse naive; HTTP-dates are always GMT
        when = when.replace(tzinfo=dt.UTC)
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")


def take_turns(
    items: Sequence[ItemT], results: list[ResultT]
) -> Callable[[Callable[[ItemT], ResultT]], None]:
    """A worker's loop over ``items``, for threads that share them out: each call takes
    the next item not yet taken until none is left, and puts what its ``send`` returns at
    the item's place in ``results``. Earlier items go first, and the hand-over costs a
    lock, not a future per item. :meth:`WebhookPublisher.publish_batch` runs it in its
    workers (and bench/run_relay.py's bare webhook loop, to hand over as the publisher does).
    """
    indexes = iter(range(len(items)))
    lock = threading.Lock()

    def work(send: Callable[[ItemT], ResultT]) -> None:
        while True:
            with lock:
                index = next(indexes, None)
            if index is None:
                return
            results[index] = send(items[index])

    return work


class WebhookPublisher(Publisher):
    """POSTs each CloudEvent to ``url``, signed with ``secret``.

    Options:

    - ``url``: the receiver's ``http://`` or ``https://`` URL.
    - ``secret``: ``whsec_<base64>`` (the key is the decoded bytes) or any other text (its
      UTF-8 bytes); a list of secrets signs with each, for key rotation.
    - ``timeout``: seconds one event's request may take, end to end: connecting, sending
      and reading the whole answer [10].
    - ``max_concurrency``: requests in flight at once within a batch, and so the most
      connections kept open [8].
    - ``headers``: extra request headers (e.g. an ``Authorization`` the receiver wants).
    - ``verify``: TLS certificate verification: ``True``, ``False``, the path of a CA
      bundle, or an ``ssl.SSLContext`` [True].
    """

    def __init__(
        self,
        url: str,
        secret: str | Sequence[str],
        timeout: float = 10.0,
        *,
        max_concurrency: int = 8,
        headers: Mapping[str, str] | None = None,
        verify: bool | str | ssl.SSLContext = True,
    ) -> None:
        secrets = [secret] if isinstance(secret, str) else list(secret)
        if not secrets:
            raise ImproperlyConfigured("WebhookPublisher needs a non-empty 'secret'.")
        if max_concurrency < 1:
            raise ImproperlyConfigured("WebhookPublisher 'max_concurrency' must be at least 1.")
        self.url = url
        self.timeout = float(timeout)
        self.max_concurrency = max_concurrency
        self._keys = [signing_key(s) for s in secrets]
        self._headers = {
            "Content-Type": CONTENT_TYPE,
            "User-Agent": f"django-orders/{django_orders.__version__}",
            **(headers or {}),
        }
        self._connections = _ConnectionPool(url, verify)
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def publish_batch(self, events: Sequence[dict[str, Any]]) -> list[PublishError | None]:
        breaker = _Breaker()

        def send(event: dict[str, Any]) -> PublishError | None:
            if self.stop_requested:  # the relay is shutting down: it releases the rest
                return NotSent("not sent: the relay is stopping")
            if breaker.tripped is not None:
                return breaker.not_sent()
            error = self._send(event)
            if isinstance(error, ReceiverDown):
                breaker.trip(error)
            return error

        workers = min(self.max_concurrency, len(events))
        if workers <= 1:
            return [send(event) for event in events]
        # The calling thread is one of the workers.
        results: list[PublishError | None] = [None] * len(events)
        work = take_turns(events, results)
        helpers = [self._executor().submit(work, send) for _ in range(workers - 1)]
        try:
            work(send)
        finally:
            for helper in helpers:
                helper.result()
        return results

    def publish(self, event: dict[str, Any]) -> None:
        error = self._send(event)
        if error is not None:
            raise error

    def close(self) -> None:
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        self._connections.close()

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=max(1, self.max_concurrency - 1),
                    thread_name_prefix="django-orders-webhook",
                )
            return self._pool

    def _send(self, event: dict[str, Any]) -> PublishError | None:
        """POST one event; ``None`` on a 2xx, else the error (never raises)."""
        msg_id = str(event["id"])
        body = serialize(event)
        # The attempt's time, not the event's: the receiver checks it against replays.
        timestamp = int(time.time())
        headers = {
            **self._headers,
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(self._keys, msg_id, timestamp, body),
            **trace_headers(event),
        }
        deadline = time.monotonic() + self.timeout
        try:
            status, reason, response_headers, text = self._connections.post(body, headers, deadline)
        except TimeoutError:
            return _receiver_down(
                f"webhook timed out after {self.timeout:g}s", reason=Reason.TIMEOUT
            )
        except (OSError, http.client.HTTPException) as exc:
            return _receiver_down(
                f"webhook request failed: {type(exc).__name__}: {exc}", reason=Reason.UNAVAILABLE
            )
        except Exception as exc:  # a bug must not lose the rest of the batch
            logger.exception("Unexpected error while sending webhook %s", msg_id)
            return PublishError(f"webhook request failed: {type(exc).__name__}: {exc}")
        return classify(status, reason, response_headers, text)


class _ConnectionPool:
    """Kept-alive ``http.client`` connections to one origin, one per request in flight."""

    def __init__(self, url: str, verify: bool | str | ssl.SSLContext) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ImproperlyConfigured(
                f"WebhookPublisher 'url' must be an http:// or https:// URL, not {url!r}."
            )
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port
        self.target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.ssl_context = _ssl_context(verify) if self.https else None
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()
        self._watchdog = Watchdog("django-orders-webhook-deadline")

    def post(
        self, body: bytes, headers: Mapping[str, str], deadline: float
    ) -> tuple[int, str, Any, str]:
        """Send one POST; the status, reason, headers and (decoded) body of the answer.

        Raises ``TimeoutError`` if the answer is not complete by ``deadline`` (a
        ``time.monotonic()`` value), whatever the request was doing then.
        """
        for attempt in range(2):
            connection, reused = self._checkout(deadline)
            response: http.client.HTTPResponse | None = None
            failure: BaseException | None = None
            with self._watchdog.guard(deadline, connection.interrupt) as guard:
                try:
                    response = self._exchange(connection, body, headers)
                    data = response.read(MAX_RESPONSE_BYTES)
                except BaseException as exc:
                    failure = exc
            # Reusable only if answered in full in time: not after a failure, nor when cut
            # short by the deadline (http.client then returns what it had read of the body
            # without complaint), nor when closing, nor with a body we did not read out.
            if (
                response is not None
                and failure is None
                and not guard.expired
                and not response.will_close
                and response.isclosed()
            ):
                self._checkin(connection)
            else:
                if response is not None:
                    response.close()
                self._discard(connection)
            if failure is not None and not isinstance(failure, Exception):
                raise failure  # KeyboardInterrupt and the like, as they came
            if guard.expired:
                raise TimeoutError("the deadline passed before the answer was complete") from (
                    failure
                )
            if failure is not None:
                # A reused connection the receiver had closed: once more on a fresh one.
                # (Should the receiver have handled the request before closing, this
                # delivers it twice; consumers dedupe on webhook-id, as at-least-once asks.)
                if isinstance(failure, STALE_CONNECTION_ERRORS) and reused and attempt == 0:
                    continue
                raise failure
            assert response is not None
            text = data.decode(response.headers.get_content_charset() or "utf-8", "replace")
            return response.status, response.reason, response.headers, text
        raise AssertionError("unreachable")  # pragma: no cover

    def _exchange(
        self, connection: _Connection, body: bytes, headers: Mapping[str, str]
    ) -> http.client.HTTPResponse:
        """Send the request and read the answer's head; the body is the caller's to read."""
        if connection.sock is None:
            connection.connect()  # within the time left, TLS handshake included
        # Each blocking call waits at most the time left; the watchdog bounds their sum.
        connection.sock.settimeout(time_left(connection.deadline))
        connection.request("POST", self.target, body=body, headers=dict(headers))
        return connection.getresponse()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            self._discard(connection)
        self._watchdog.close()

    def _checkout(self, deadline: float) -> tuple[_Connection, bool]:
        with self._lock:
            connection = self._idle.pop() if self._idle else None
        reused = connection is not None
        if connection is None:
            connection_class = _TLSConnection if self.https else _Connection
            connection = connection_class(self.host, self.port)
            connection.tls = self.ssl_context
            connection.interrupt = SocketInterrupt()
        connection.deadline = deadline
        return connection, reused

    def _checkin(self, connection: _Connection) -> None:
        with self._lock:
            self._idle.append(connection)

    @staticmethod
    def _discard(connection: _Connection) -> None:
        """Close a connection for good; never while a guard on it is active."""
        connection.close()
        connection.interrupt.release()


class _Connection(http.client.HTTPConnection):
    """A connection that connects within the time left before its request's ``deadline``,
    and whose ``interrupt`` then watches its socket.

    With ``tls`` it is an HTTPS connection whose TLS handshake gets only what the TCP
    connect left over (``HTTPSConnection`` would give the handshake the whole timeout again).
    """

    deadline = -math.inf  # set per request by the pool
    tls: ssl.SSLContext | None = None
    #: Shuts the connection's socket down at a request's deadline (set by the pool).
    interrupt: SocketInterrupt

    def connect(self) -> None:
        self.timeout = time_left(self.deadline)
        super().connect()
        if self.tls is not None:
            self.sock.settimeout(time_left(self.deadline))
            self.sock = self.tls.wrap_socket(self.sock, server_hostname=self.host)
        self.interrupt.watch(self.sock)


class _TLSConnection(_Connection):
    default_port = http.client.HTTPS_PORT


def _ssl_context(verify: bool | str | ssl.SSLContext) -> ssl.SSLContext:
    if isinstance(verify, ssl.SSLContext):
        return verify
    if verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if isinstance(verify, str):
        return ssl.create_default_context(cafile=verify)
    return ssl.create_default_context()


class _Breaker:
    """Stops a batch from sending once the receiver is seen to be down.

    After a timeout, a failed connection, a 429 or a 503, the events of the batch not yet
    sent fail at once with the same (retryable) error instead of each waiting out its own
    timeout: a hanging receiver then costs one timeout per batch, not one per event, and a
    struggling one is not hammered with the rest of the batch.
    """

    def __init__(self) -> None:
        self.tripped: PublishError | None = None

    def trip(self, error: PublishError) -> None:
        if self.tripped is None:
            self.tripped = error

    def not_sent(self) -> PublishError:
        assert self.tripped is not None
        return PublishError(
            f"not sent: an earlier event of the batch failed with: {self.tripped}",
            retry_after=self.tripped.retry_after,
            reason=self.tripped.reason,
        )


# Answers that speak for the receiver as a whole, not for one event.
RECEIVER_DOWN_STATUSES = frozenset({429, 503})


class ReceiverDown(PublishError):
    """A retryable failure that speaks for the receiver as a whole (see ``_Breaker``)."""


def _receiver_down(
    message: str, retry_after: float | None = None, reason: str | None = None
) -> PublishError:
    return ReceiverDown(message, retry_after=retry_after, reason=reason)


def classify(status: int, reason: str, headers: Any, text: str) -> PublishError | None:
    """The outcome of a webhook answer: ``None`` for 2xx, else a :class:`PublishError`."""
    if 200 <= status < 300:
        return None
    message = f"webhook answered {status} {reason}".rstrip()
    snippet = " ".join(text.split())[:ERROR_BODY_CHARS]
    if snippet:
        message += f": {snippet}"
    if 400 <= status < 500 and status not in RETRYABLE_CLIENT_ERRORS:
        return PublishError(message, permanent=True)
    if 300 <= status < 400:
        location = headers.get("location")
        message += f" (redirects are not followed{'; Location: ' + location if location else ''})"
    retry_after = parse_retry_after(headers.get("retry-after"))
    if status in RECEIVER_DOWN_STATUSES:
        return _receiver_down(message, retry_after)
    return PublishError(message, retry_after=retry_after)
