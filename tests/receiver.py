"""A real HTTP receiver on loopback that records the CloudEvents the relay POSTs to it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


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
