"""Publishers for the relay tests: to the test receiver over real HTTP, refusing, recording
in process, pausing or stuck. Referred to by dotted path (``tests.relay_publishers.…``)
from relay subprocesses."""

from __future__ import annotations

import http.client
import json
import logging
import os
import signal
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from django_orders.models import OutboxEvent
from django_orders.publishers.base import Publisher, PublishError
from tests.waiting import wait_until


class ReceiverPublisher(Publisher):
    """A test publisher: POSTs each CloudEvent to ``url`` on one keep-alive connection.

    2xx is success; 408, 425, 429 and 5xx are transient (``Retry-After`` honoured); any
    other 4xx is permanent — the rules docs/guide/publishers.md gives the webhook publisher.
    """

    def __init__(self, url: str | None = None, timeout: float = 5.0) -> None:
        self.url = url or os.environ["ORDERS_TEST_RECEIVER_URL"]
        self.timeout = timeout
        parts = urlsplit(self.url)
        self.host, self.port, self.path = parts.hostname or "", parts.port or 80, parts.path
        self.conn: http.client.HTTPConnection | None = None

    def publish(self, event: dict[str, Any]) -> None:
        body = json.dumps(event).encode()
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            self.conn.request(
                "POST",
                self.path,
                body=body,
                headers={
                    "Content-Type": "application/cloudevents+json",
                    "X-Relay-Pid": str(os.getpid()),
                },
            )
            response = self.conn.getresponse()
            response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise PublishError(f"{type(exc).__name__}: {exc}") from exc
        status = response.status
        if 200 <= status < 300:
            return
        retry_after = response.getheader("Retry-After")
        permanent = 400 <= status < 500 and status not in (408, 425, 429)
        raise PublishError(
            f"HTTP {status}",
            permanent=permanent,
            retry_after=float(retry_after) if retry_after else None,
        )

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.close()


class PausingPublisher(ReceiverPublisher):
    """A :class:`ReceiverPublisher` whose relay stops itself (``SIGSTOP``) once its first
    batch is sent and the next one is claimed ahead: a relay paused between two batches."""

    batches = 0

    def publish_batch(self, events: Sequence[dict[str, Any]]) -> list[PublishError | None]:
        results = super().publish_batch(events)
        type(self).batches += 1
        if type(self).batches == 1:
            # The claim thread claims the next batch meanwhile: wait until it holds it.
            wait_until(
                lambda: (
                    OutboxEvent.objects.filter(lease_token__isnull=False)
                    .values("lease_token")
                    .distinct()
                    .count()
                    >= 2
                ),
                10,
                "the batch claimed ahead",
            )
            os.kill(os.getpid(), signal.SIGSTOP)
        return results


class FailingPublisher(Publisher):
    """Refuses everything: transient by default, permanent with ``permanent=True``."""

    def __init__(self, permanent: bool = False, retry_after: float | None = None) -> None:
        self.permanent = permanent
        self.retry_after = retry_after

    def publish(self, event: dict[str, Any]) -> None:
        raise PublishError(
            "refused by the test", permanent=self.permanent, retry_after=self.retry_after
        )


class RecordingPublisher(Publisher):
    """Accepts everything in process and remembers it (for in-process relay tests)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.closed = False

    def publish(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def close(self) -> None:
        self.closed = True


class StuckPublisher(Publisher):
    """A publisher whose publish hangs far past its own ``timeout`` (a misbehaving driver)."""

    timeout = 0.5

    def publish(self, event: dict[str, Any]) -> None:
        logging.getLogger("django_orders.relay").warning("publish started")
        time.sleep(60)
