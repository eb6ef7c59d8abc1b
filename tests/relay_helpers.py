"""Real services for the relay tests: an HTTP receiver on loopback, a publisher that POSTs
to it, relay subprocesses, and bounded waits. Nothing here mocks the database or HTTP."""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from django.db import connection
from django.utils import timezone

from django_orders.models import OutboxEvent
from django_orders.publishers.base import Publisher, PublishError

ROOT = Path(__file__).resolve().parent.parent


def wait_until(
    predicate: Callable[[], Any], timeout: float, message: str = "", interval: float = 0.02
) -> Any:
    """Poll ``predicate`` until it is truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s: {message or predicate}")
        time.sleep(interval)


# -- the receiver ----------------------------------------------------------------------


class Receiver:
    """A real HTTP server on 127.0.0.1 that records the CloudEvents POSTed to it.

    ``status`` is what it answers (200 by default; set 503 to refuse for a while),
    ``delay`` seconds it waits before answering, ``retry_after`` an optional header.
    ``started`` counts requests that arrived (answered or not yet); ``requests`` keeps
    each one's headers and raw body, refused ones included. A received event gets
    ``_received_at`` (monotonic), ``_received_wall`` (epoch seconds) and ``_relay_pid``
    (the ``X-Relay-Pid`` header :class:`ReceiverPublisher` sends).
    """

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.requests: list[tuple[dict[str, str], bytes, int]] = []
        self.refused = 0
        self.started = 0
        self.status = 200
        self.delay = 0.0
        self.retry_after: str | None = None
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    receiver.started += 1
                if receiver.delay:
                    time.sleep(receiver.delay)
                status = receiver.status
                headers = {name.lower(): value for name, value in self.headers.items()}
                with receiver.lock:
                    receiver.requests.append((headers, body, status))
                if 200 <= status < 300:
                    event = json.loads(body)
                    event["_received_at"] = time.monotonic()
                    event["_received_wall"] = time.time()
                    event["_relay_pid"] = headers.get("x-relay-pid")
                    with receiver.lock:
                        receiver.received.append(event)
                else:
                    with receiver.lock:
                        receiver.refused += 1
                self.send_response(status)
                if receiver.retry_after is not None and status >= 400:
                    self.send_header("Retry-After", receiver.retry_after)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/events"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def ids(self) -> list[str]:
        with self.lock:
            return [event["id"] for event in self.received]

    def count(self) -> int:
        with self.lock:
            return len(self.received)

    def versions_by_order(self) -> dict[str, list[int]]:
        """Per order (``subject``), the versions in the order they arrived."""
        with self.lock:
            events = list(self.received)
        return versions_by_order(events)


def versions_by_order(events: Iterable[dict[str, Any]]) -> dict[str, list[int]]:
    """Per order (the CloudEvent's ``subject``), the versions in the order given."""
    by_order: dict[str, list[int]] = {}
    for event in events:
        by_order.setdefault(event["subject"], []).append(event["data"]["version"])
    return by_order


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


def is_stopped(pid: int) -> bool:
    """Whether process ``pid`` is stopped (``T`` in /proc/<pid>/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] == "T"


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


def relay_once(publisher: str, *args: str, **options: Any) -> int:
    """``manage.py orders_outbox_relay --once --no-listen --publisher … --publisher-options
    …`` in process; returns the exit status."""
    from django.core.management import call_command

    try:
        call_command(
            "orders_outbox_relay",
            "--once",
            "--no-listen",
            "--publisher",
            publisher,
            "--publisher-options",
            json.dumps(options),
            *args,
        )
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def drain(channel: Any, queue: str, expected: int, timeout: float = 5.0) -> list[tuple]:
    """Consume ``expected`` messages (method, properties, body) from a RabbitMQ ``queue``
    through a pika blocking channel, auto-acknowledged."""
    messages: list[tuple] = []
    for method, properties, body in channel.consume(
        queue, auto_ack=True, inactivity_timeout=timeout
    ):
        if method is None:  # nothing more within the timeout
            break
        messages.append((method, properties, body))
        if len(messages) == expected:
            break
    channel.cancel()
    return messages


# -- events ----------------------------------------------------------------------------


def bulk_events(orders: int, versions: int = 3, tenant: str = "shop-1") -> list[OutboxEvent]:
    """Insert ``orders * versions`` pending events directly (fast; thousands in a blink)."""
    now = timezone.now()
    rows = []
    for _ in range(orders):
        order_id = uuid.uuid4()
        for version in range(1, versions + 1):
            rows.append(
                OutboxEvent(
                    tenant_id=tenant,
                    aggregate_type="order",
                    aggregate_id=order_id,
                    aggregate_version=version,
                    type=f"order.v{version}",
                    payload={"id": str(order_id), "version": version},
                    created_at=now,
                    available_at=now,
                )
            )
    OutboxEvent.objects.bulk_create(rows, batch_size=2000)
    return rows


# -- relay subprocesses ----------------------------------------------------------------


def database_env() -> dict[str, str]:
    """Environment that points a subprocess at the test database this test uses."""
    settings_dict = connection.settings_dict
    if connection.vendor == "postgresql":
        user = quote(settings_dict.get("USER") or "")
        password = settings_dict.get("PASSWORD") or ""
        auth = f"{user}:{quote(password)}@" if password else (f"{user}@" if user else "")
        host = settings_dict.get("HOST") or "127.0.0.1"
        port = settings_dict.get("PORT") or 5432
        return {
            "DB": "postgres",
            "DATABASE_URL": f"postgres://{auth}{host}:{port}/{settings_dict['NAME']}",
        }
    return {"DB": "sqlite", "ORDERS_SQLITE_PATH": str(settings_dict["NAME"])}


def relay_env(receiver: Receiver | None = None, **orders_settings: Any) -> dict[str, str]:
    env = {
        **os.environ,
        **database_env(),
        "DJANGO_SETTINGS_MODULE": "tests.relay_settings",
        "PYTHONPATH": str(ROOT),
        "ORDERS_RELAY_SETTINGS": json.dumps(orders_settings),
    }
    if receiver is not None:
        env["ORDERS_TEST_RECEIVER_URL"] = receiver.url
    return env


#: Runs a management command with psycopg (3) made unimportable, so Django falls back to
#: psycopg2: the relay must work with either driver.
PSYCOPG2_ONLY = (
    "import sys; sys.modules['psycopg'] = None; "
    "from django.core.management import execute_from_command_line; "
    "execute_from_command_line(sys.argv)"
)


class RelayProcess:
    """``python -m django orders_outbox_relay`` in a subprocess, output in a file.

    ``driver="psycopg2"`` hides psycopg 3 from the subprocess.
    """

    def __init__(
        self, log_path: Path, env: dict[str, str], *args: str, driver: str = "default"
    ) -> None:
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in wait()/kill()
        runner = ["-c", PSYCOPG2_ONLY] if driver == "psycopg2" else ["-m", "django"]
        self.proc = subprocess.Popen(
            [
                sys.executable,
                *runner,
                "orders_outbox_relay",
                "--publisher",
                "tests.relay_helpers.ReceiverPublisher",
                *args,
            ],
            env=env,
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_started(self, timeout: float = 20) -> None:
        wait_until(
            lambda: "Outbox relay started" in self.output() or self.proc.poll() is not None,
            timeout,
            "relay start",
        )
        assert self.proc.poll() is None, self.output()

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 30) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is not None:
                self._log.close()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._log.close()


@contextlib.contextmanager
def relays(
    log_dir: Path, count: int, env: dict[str, str], *args: str, driver: str = "default"
) -> Iterator[list[RelayProcess]]:
    """Start ``count`` relays; kill whatever is still running on the way out."""
    started = [
        RelayProcess(log_dir / f"relay-{i}.log", env, *args, driver=driver) for i in range(count)
    ]
    try:
        yield started
    finally:
        for relay in started:
            if relay.proc.poll() is None:
                relay.kill()
            else:
                relay._log.close()
