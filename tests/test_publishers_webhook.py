"""docs/guide/publishers.md: the webhook publisher against a real local HTTP/1.1 server.

The receiver is ``http.server.ThreadingHTTPServer`` on loopback with keep-alive; each
test sets how it answers. Signatures are checked by the independent verifier in
``tests/standard_webhooks_verifier.py``, written from the Standard Webhooks spec.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import standardwebhooks
from django.core.exceptions import ImproperlyConfigured

from django_orders import services
from django_orders.cloudevents import serialize, to_cloudevent
from django_orders.models import OutboxEvent
from django_orders.publishers import NotSent, PublishError, WebhookPublisher
from django_orders.publishers.webhook import parse_retry_after, sign, signing_key
from tests.cloudevent_samples import sample_batch, sample_cloudevent
from tests.misbehaving_peers import TricklingReceiver
from tests.standard_webhooks_verifier import Verifier, WebhookVerificationError
from tests.waiting import wait_until

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


Answer = tuple[int, dict[str, str], bytes]


class Receiver(ThreadingHTTPServer):
    """A webhook receiver that records requests, counts connections and in-flight requests."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.received: list[Received] = []
        self.connections = 0
        self.open_connections = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.release = threading.Event()  # wakes handlers told to hang
        self.answer: Callable[[Received], Answer] = lambda request: (204, {}, b"")
        self.sockets: list[socket.socket] = []

    def close_idle_connections(self) -> None:
        """Close every connection between requests, as a keep-alive timeout does."""
        with self.lock:
            sockets, self.sockets = self.sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + 5
        while self.open_connections and time.monotonic() < deadline:
            time.sleep(0.01)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}/hooks/orders"

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (timeout tests) is expected; keep the output clean."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    timeout = 10  # an idle keep-alive connection ends eventually
    server: Receiver

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.connections += 1
            self.server.open_connections += 1
            self.server.sockets.append(self.connection)

    def finish(self) -> None:
        super().finish()
        with self.server.lock:
            self.server.open_connections -= 1

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        request = Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        with self.server.lock:
            self.server.received.append(request)
            self.server.in_flight += 1
            self.server.max_in_flight = max(self.server.max_in_flight, self.server.in_flight)
        try:
            status, headers, payload = self.server.answer(request)
        finally:
            with self.server.lock:
                self.server.in_flight -= 1
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def make_publisher(receiver: Receiver) -> Iterator[Callable[..., WebhookPublisher]]:
    made: list[WebhookPublisher] = []

    def make(**options: Any) -> WebhookPublisher:
        options.setdefault("url", receiver.url)
        options.setdefault("secret", SECRET)
        publisher = WebhookPublisher(**options)
        made.append(publisher)
        return publisher

    yield make
    for publisher in made:
        publisher.close()


def answer_with(status: int, headers: dict[str, str] | None = None, body: bytes = b"") -> Any:
    return lambda request: (status, headers or {}, body)


# --- what goes over the wire -------------------------------------------------------------


def test_posts_the_cloudevent_in_structured_mode(receiver: Receiver, make_publisher: Any) -> None:
    event = sample_cloudevent(total_cents=990, metadata={"note": "Grüße"})

    assert make_publisher().publish_batch([event]) == [None]

    (request,) = receiver.received
    assert request.path == "/hooks/orders"
    assert request.headers["content-type"] == "application/cloudevents+json"
    assert request.body == serialize(event)
    assert json.loads(request.body) == event
    assert request.headers["user-agent"].startswith("django-orders/")


def test_standard_webhooks_headers(receiver: Receiver, make_publisher: Any) -> None:
    event = sample_cloudevent()
    before = int(time.time())

    make_publisher().publish_batch([event])

    headers = receiver.received[0].headers
    assert headers["webhook-id"] == event["id"]
    assert before <= int(headers["webhook-timestamp"]) <= int(time.time())
    assert headers["webhook-signature"].startswith("v1,")


def test_signature_verifies_with_an_independent_verifier(
    receiver: Receiver, make_publisher: Any
) -> None:
    events = sample_batch(5)
    make_publisher().publish_batch(events)

    verifier = Verifier(SECRET)
    for request in receiver.received:
        assert verifier.verify(request.body, request.headers) in events


def test_a_plain_text_secret_is_used_as_its_utf8_bytes(
    receiver: Receiver, make_publisher: Any
) -> None:
    make_publisher(secret="söme shared secret").publish_batch([sample_cloudevent()])

    request = receiver.received[0]
    Verifier("söme shared secret".encode()).verify(request.body, request.headers)
    with pytest.raises(WebhookVerificationError):
        Verifier(SECRET).verify(request.body, request.headers)


def test_a_tampered_body_fails_verification(receiver: Receiver, make_publisher: Any) -> None:
    make_publisher().publish_batch([sample_cloudevent()])
    request = receiver.received[0]

    with pytest.raises(WebhookVerificationError):
        Verifier(SECRET).verify(request.body.replace(b"shop-1", b"shop-2"), request.headers)


def test_several_secrets_sign_with_each_for_key_rotation(
    receiver: Receiver, make_publisher: Any
) -> None:
    old = "whsec_" + base64.b64encode(b"the old key, 24 bytes lon").decode()
    make_publisher(secret=[SECRET, old]).publish_batch([sample_cloudevent()])

    request = receiver.received[0]
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    Verifier(SECRET).verify(request.body, request.headers)
    Verifier(old).verify(request.body, request.headers)


# --- what the official Standard Webhooks library makes of it ----------------------------

PLAIN_SECRET = "my-plain-secret"


def test_standardwebhooks_verifies_a_whsec_secret_given_as_it_is(
    receiver: Receiver, make_publisher: Any
) -> None:
    events = sample_batch(3)
    assert make_publisher().publish_batch(events) == [None] * 3

    webhook = standardwebhooks.Webhook(SECRET)
    verified = [webhook.verify(r.body, r.headers) for r in receiver.received]
    assert sorted(verified, key=lambda e: e["id"]) == sorted(events, key=lambda e: e["id"])


def test_standardwebhooks_verifies_a_plain_text_secret_given_as_bytes(
    receiver: Receiver, make_publisher: Any
) -> None:
    """The key of a plain-text secret is its UTF-8 bytes, and that is how a verifier must
    get it: given as a string, the library takes it for base64 and fails."""
    event = sample_cloudevent()
    make_publisher(secret=PLAIN_SECRET).publish_batch([event])
    request = receiver.received[0]

    assert standardwebhooks.Webhook(PLAIN_SECRET.encode()).verify(
        request.body, request.headers
    ) == (event)
    # A base64 error when the secret is read (1.0) or "No matching signature" (1.3).
    with pytest.raises((standardwebhooks.WebhookVerificationError, ValueError)):
        standardwebhooks.Webhook(PLAIN_SECRET).verify(request.body, request.headers)


@pytest.mark.parametrize("old", [PLAIN_SECRET, "whsec_" + base64.b64encode(b"old" * 11).decode()])
def test_standardwebhooks_verifies_each_secret_of_a_rotation(
    old: str, receiver: Receiver, make_publisher: Any
) -> None:
    """Signed with the new and the old secret, a request verifies for receivers that
    still have the old one and for those that have the new one; not for others."""
    make_publisher(secret=[SECRET, old]).publish_batch([sample_cloudevent()])
    request = receiver.received[0]

    old_key: str | bytes = old if old.startswith("whsec_") else old.encode()
    for key in (SECRET, old_key):
        assert standardwebhooks.Webhook(key).verify(request.body, request.headers)
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(b"some other key").verify(request.body, request.headers)


def test_the_spec_test_vector() -> None:
    # From the Standard Webhooks reference libraries' test suite (test_sign_function).
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    msg_id = "msg_p5jXN8AQM9LWM0D4loKWxJek"
    timestamp = 1614265330
    body = b'{"test": 2432232314}'
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

    assert sign([signing_key(secret)], msg_id, timestamp, body) == expected
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": expected,
    }
    assert Verifier(secret).verify(body, headers, now=timestamp) == {"test": 2432232314}
    with pytest.raises(WebhookVerificationError):  # replayed 6 minutes later
        Verifier(secret).verify(body, headers, now=timestamp + 360)


@pytest.mark.django_db
def test_an_outbox_event_is_delivered_and_redelivered_with_the_same_id(
    receiver: Receiver, make_publisher: Any
) -> None:
    order = services.create_order("shop-7", total_cents=100)
    row = OutboxEvent.objects.get(aggregate_id=order.id)
    publisher = make_publisher()

    publisher.publish_batch([to_cloudevent(row)])
    publisher.publish_batch([to_cloudevent(row)])

    first, second = receiver.received
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == str(row.id)
    assert first.body == second.body
    payload = Verifier(SECRET).verify(second.body, second.headers)
    assert payload["tenantid"] == "shop-7"
    assert payload["data"]["id"] == str(order.id)


# --- outcomes ----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_any_2xx_is_success(status: int, receiver: Receiver, make_publisher: Any) -> None:
    receiver.answer = answer_with(status)
    assert make_publisher().publish_batch([sample_cloudevent()]) == [None]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 410, 413, 415, 422])
def test_a_4xx_is_permanent(status: int, receiver: Receiver, make_publisher: Any) -> None:
    receiver.answer = answer_with(status, body=b'{"error": "no such hook"}')

    (error,) = make_publisher().publish_batch([sample_cloudevent()])

    assert isinstance(error, PublishError)
    assert error.permanent
    assert str(status) in str(error)
    assert "no such hook" in str(error)


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504])
def test_try_again_later_answers_are_retryable_with_retry_after(
    status: int, receiver: Receiver, make_publisher: Any
) -> None:
    receiver.answer = answer_with(status, {"Retry-After": "7"})

    (error,) = make_publisher().publish_batch([sample_cloudevent()])

    assert isinstance(error, PublishError)
    assert not error.permanent
    assert error.retry_after == 7.0


def test_retry_after_as_an_http_date(receiver: Receiver, make_publisher: Any) -> None:
    import datetime as dt

    when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=120)
    receiver.answer = answer_with(503, {"Retry-After": format_datetime(when, usegmt=True)})

    (error,) = make_publisher().publish_batch([sample_cloudevent()])

    assert error is not None
    assert error.retry_after is not None
    assert 100 <= error.retry_after <= 121


def test_no_retry_after_header_gives_no_hint(receiver: Receiver, make_publisher: Any) -> None:
    receiver.answer = answer_with(500)
    (error,) = make_publisher().publish_batch([sample_cloudevent()])
    assert error is not None
    assert error.retry_after is None


def test_a_redirect_is_not_followed_and_is_retryable(
    receiver: Receiver, make_publisher: Any
) -> None:
    receiver.answer = answer_with(301, {"Location": "http://127.0.0.1:1/elsewhere"})

    (error,) = make_publisher().publish_batch([sample_cloudevent()])

    assert error is not None
    assert not error.permanent
    assert "redirects are not followed" in str(error)
    assert len(receiver.received) == 1


def test_a_timeout_is_retryable(receiver: Receiver, make_publisher: Any) -> None:
    def hang(request: Received) -> Answer:
        receiver.release.wait(5)
        return 204, {}, b""

    receiver.answer = hang
    publisher = make_publisher(timeout=0.2)

    started = time.monotonic()
    (error,) = publisher.publish_batch([sample_cloudevent()])

    assert time.monotonic() - started < 2
    assert error is not None
    assert not error.permanent
    assert "timed out" in str(error)
    receiver.release.set()


def test_a_refused_connection_is_retryable(make_publisher: Any) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    (error,) = make_publisher(url=f"http://127.0.0.1:{port}/").publish_batch([sample_cloudevent()])

    assert error is not None
    assert not error.permanent
    assert "ConnectionRefusedError" in str(error)


def test_the_receiver_recovering_is_seen_on_the_next_batch(
    receiver: Receiver, make_publisher: Any
) -> None:
    publisher = make_publisher()
    event = sample_cloudevent()
    receiver.answer = answer_with(503)
    assert publisher.publish_batch([event])[0] is not None
    receiver.answer = answer_with(200)
    assert publisher.publish_batch([event]) == [None]


# --- connections and concurrency ---------------------------------------------------------


def test_connections_are_kept_alive_across_requests_and_batches(
    receiver: Receiver, make_publisher: Any
) -> None:
    publisher = make_publisher(max_concurrency=1)
    for _ in range(5):
        assert publisher.publish_batch(sample_batch(10)) == [None] * 10

    assert len(receiver.received) == 50
    assert receiver.connections == 1


def test_a_connection_the_receiver_closed_while_idle_is_replaced(
    receiver: Receiver, make_publisher: Any
) -> None:
    publisher = make_publisher(max_concurrency=1)
    assert publisher.publish_batch(sample_batch(2)) == [None, None]

    receiver.close_idle_connections()  # the receiver's keep-alive timeout strikes

    assert publisher.publish_batch(sample_batch(2)) == [None, None]
    assert receiver.connections == 2
    assert len(receiver.received) == 4


def test_connection_close_from_the_receiver_is_honoured(
    receiver: Receiver, make_publisher: Any
) -> None:
    receiver.answer = answer_with(200, {"Connection": "close"})
    publisher = make_publisher(max_concurrency=1)

    assert publisher.publish_batch(sample_batch(3)) == [None] * 3
    assert receiver.connections == 3


def test_a_long_answer_is_not_read_to_its_end(receiver: Receiver, make_publisher: Any) -> None:
    receiver.answer = answer_with(500, body=b"x" * (2 << 20))
    publisher = make_publisher(max_concurrency=1)

    (error,) = publisher.publish_batch([sample_cloudevent()])

    assert error is not None
    assert len(str(error)) < 300
    receiver.answer = answer_with(200)
    assert publisher.publish_batch([sample_cloudevent()]) == [None]


def test_a_concurrent_batch_reuses_a_bounded_set_of_connections(
    receiver: Receiver, make_publisher: Any
) -> None:
    publisher = make_publisher(max_concurrency=4)
    for _ in range(5):
        assert publisher.publish_batch(sample_batch(40)) == [None] * 40

    assert len(receiver.received) == 200
    assert receiver.connections <= 4
    assert receiver.max_in_flight <= 4


def test_a_batch_is_sent_concurrently(receiver: Receiver, make_publisher: Any) -> None:
    def slow(request: Received) -> Answer:
        time.sleep(0.05)
        return 204, {}, b""

    receiver.answer = slow
    assert make_publisher(max_concurrency=8).publish_batch(sample_batch(16)) == [None] * 16
    assert receiver.max_in_flight > 1


def test_results_come_back_in_input_order(receiver: Receiver, make_publisher: Any) -> None:
    events = sample_batch(30)
    refused = {e["id"] for e in events[::3]}

    def answer(request: Received) -> Answer:
        time.sleep(0.001 * (hash(request.headers["webhook-id"]) % 5))
        return (404 if request.headers["webhook-id"] in refused else 200), {}, b""

    receiver.answer = answer
    results = make_publisher(max_concurrency=8).publish_batch(events)

    assert [e["id"] in refused for e in events] == [r is not None for r in results]
    assert all(r.permanent for r in results if r is not None)


def test_publish_raises_what_publish_batch_returns(receiver: Receiver, make_publisher: Any) -> None:
    receiver.answer = answer_with(410)
    with pytest.raises(PublishError) as excinfo:
        make_publisher().publish(sample_cloudevent())
    assert excinfo.value.permanent


def test_an_empty_batch_sends_nothing(receiver: Receiver, make_publisher: Any) -> None:
    assert make_publisher().publish_batch([]) == []
    assert receiver.received == []


# --- TLS ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 (cert path, key path), made by openssl."""
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a test certificate")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = str(directory / "cert.pem"), str(directory / "key.pem")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            key,
            "-out",
            cert,
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


@pytest.fixture
def tls_url(receiver: Receiver, certificate: tuple[str, str]) -> str:
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    receiver.socket = context.wrap_socket(receiver.socket, server_side=True)
    return receiver.url.replace("http://", "https://")


def test_https_with_the_receivers_ca(
    tls_url: str, certificate: tuple[str, str], receiver: Receiver, make_publisher: Any
) -> None:
    publisher = make_publisher(url=tls_url, verify=certificate[0], max_concurrency=1)

    assert publisher.publish_batch(sample_batch(3)) == [None] * 3
    assert receiver.connections == 1
    request = receiver.received[0]
    Verifier(SECRET).verify(request.body, request.headers)


def test_https_with_an_unknown_certificate_is_retryable(tls_url: str, make_publisher: Any) -> None:
    (error,) = make_publisher(url=tls_url).publish_batch([sample_cloudevent()])

    assert error is not None
    assert not error.permanent
    assert "CERTIFICATE_VERIFY_FAILED" in str(error)


def test_https_without_verification_when_asked(tls_url: str, make_publisher: Any) -> None:
    assert make_publisher(url=tls_url, verify=False).publish_batch([sample_cloudevent()]) == [None]


# --- configuration -----------------------------------------------------------------------


def test_a_malformed_whsec_secret_is_a_configuration_error() -> None:
    with pytest.raises(ImproperlyConfigured, match="base64"):
        WebhookPublisher(url="http://127.0.0.1/", secret="whsec_not base64!")


@pytest.mark.parametrize("secret", ["", []])
def test_an_empty_secret_is_a_configuration_error(secret: Any) -> None:
    with pytest.raises(ImproperlyConfigured, match="secret"):
        WebhookPublisher(url="http://127.0.0.1/", secret=secret)


def test_needs_no_third_party_http_client(
    monkeypatch: pytest.MonkeyPatch, receiver: Receiver, make_publisher: Any
) -> None:
    for name in ("httpx", "requests", "urllib3"):
        monkeypatch.setitem(sys.modules, name, None)
    assert make_publisher().publish_batch([sample_cloudevent()]) == [None]


@pytest.mark.parametrize("url", ["ftp://example.com/", "hooks.example.com/orders", ""])
def test_a_url_that_is_not_http_is_a_configuration_error(url: str) -> None:
    with pytest.raises(ImproperlyConfigured, match="url"):
        WebhookPublisher(url=url, secret=SECRET)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0.0),
        ("120", 120.0),
        (" 5 ", 5.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 60.0),
        ("Wed, 21 Oct 2015 07:26:00 GMT", 0.0),  # in the past: now
        ("-3", None),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    now = 1445412420.0  # Wed, 21 Oct 2015 07:27:00 GMT
    assert parse_retry_after(value, now=now) == expected


# --- a receiver that is down costs one timeout per batch, not one per event -------------


def test_after_a_timeout_the_rest_of_the_batch_is_not_sent(
    receiver: Receiver, make_publisher: Any
) -> None:
    def hang(request: Received) -> Answer:
        receiver.release.wait(5)
        return 204, {}, b""

    receiver.answer = hang
    publisher = make_publisher(timeout=0.3, max_concurrency=2)

    started = time.monotonic()
    results = publisher.publish_batch(sample_batch(20))

    assert time.monotonic() - started < 1.5  # not 10 rounds of 0.3 s
    assert all(isinstance(r, PublishError) and not r.permanent for r in results)
    assert len(receiver.received) <= 4
    assert any("not sent" in str(r) for r in results)
    receiver.release.set()


@pytest.mark.parametrize("status", [429, 503])
def test_a_receiver_wide_refusal_stops_the_batch(
    status: int, receiver: Receiver, make_publisher: Any
) -> None:
    receiver.answer = answer_with(status, {"Retry-After": "30"})

    results = make_publisher(max_concurrency=1).publish_batch(sample_batch(10))

    assert len(receiver.received) == 1
    assert all(isinstance(r, PublishError) and r.retry_after == 30.0 for r in results)
    assert "not sent" in str(results[1])


@pytest.mark.parametrize("status", [500, 404])
def test_a_per_event_failure_does_not_stop_the_batch(
    status: int, receiver: Receiver, make_publisher: Any
) -> None:
    receiver.answer = answer_with(status)
    make_publisher(max_concurrency=1).publish_batch(sample_batch(10))
    assert len(receiver.received) == 10


@pytest.mark.parametrize("concurrency", [1, 4])
def test_a_stop_request_finishes_the_requests_in_flight_and_sends_no_more(
    concurrency: int, receiver: Receiver, make_publisher: Any
) -> None:
    publisher = make_publisher(max_concurrency=concurrency)

    def stop_then_accept(request: Received) -> Answer:
        publisher.request_stop()  # the relay got SIGTERM while this request was in flight
        return 204, {}, b""

    receiver.answer = stop_then_accept
    results = publisher.publish_batch(sample_batch(20))

    sent = len(receiver.received)
    assert 1 <= sent <= concurrency
    assert results.count(None) == sent  # what was in flight completed
    assert [type(r) for r in results if r is not None] == [NotSent] * (20 - sent)


# --- timeout is end to end: a receiver that never finishes its answer -------------------


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 0


def webhook_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("django-orders-webhook")]


@pytest.mark.parametrize("how", ["trickle-body", "trickle-head"])
def test_an_answer_trickled_byte_by_byte_times_out_at_the_deadline(how: str) -> None:
    """Each byte comes well within the timeout, the answer as a whole never does: the
    request fails at ``timeout`` and its half-read connection is dropped, not reused."""
    plans = iter([how])
    fds_before = open_descriptors()
    with TricklingReceiver(lambda body: next(plans, "ok"), interval=0.02) as peer:
        publisher = WebhookPublisher(url=peer.url, secret=SECRET, timeout=0.5, max_concurrency=1)
        try:
            started = time.monotonic()
            (error,) = publisher.publish_batch([sample_cloudevent()])
            elapsed = time.monotonic() - started

            assert isinstance(error, PublishError)
            assert not error.permanent
            assert "timed out after 0.5s" in str(error)
            assert elapsed < 1.5  # not the 20 s the whole answer takes
            wait_until(lambda: peer.dropped == 1, 5, "the publisher drops the connection")

            assert publisher.publish_batch([sample_cloudevent()]) == [None]
            assert peer.connections == 2  # a fresh connection for the next request
        finally:
            publisher.close()
    assert webhook_threads() == []  # the watchdog and the worker pool are gone
    assert open_descriptors() == fds_before  # and every socket, duplicates included


def test_a_trickled_answer_stops_the_rest_of_the_batch(make_publisher: Any) -> None:
    """The deadline trips the per-batch breaker like any timeout: one timeout per batch."""
    with TricklingReceiver(interval=0.02) as peer:
        publisher = make_publisher(url=peer.url, timeout=0.5, max_concurrency=1)

        started = time.monotonic()
        results = publisher.publish_batch(sample_batch(10))

        assert time.monotonic() - started < 1.5
        assert len(peer.bodies) == 1
        assert "timed out" in str(results[0])
        assert all(isinstance(r, PublishError) and not r.permanent for r in results)
        assert all("not sent" in str(r) for r in results[1:])


def test_requests_on_other_connections_go_on_while_one_answer_trickles(
    make_publisher: Any,
) -> None:
    """What the breaker leaves alone: the events the other workers send before the
    deadline of the trickled one passes are published."""
    events = sample_batch(8)
    slow = serialize(events[0])
    with TricklingReceiver(lambda body: "trickle-body" if body == slow else "ok") as peer:
        publisher = make_publisher(url=peer.url, timeout=1.0, max_concurrency=4)

        results = publisher.publish_batch(events)

        assert "timed out" in str(results[0])
        assert results[1:] == [None] * 7
        assert peer.answered == 7


def test_the_deadline_holds_over_https(certificate: tuple[str, str], make_publisher: Any) -> None:
    """TLS reads are cut at the deadline too: the watchdog shuts the socket down under
    the TLS layer."""
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    with TricklingReceiver(interval=0.02, tls=context) as peer:
        publisher = make_publisher(url=peer.url, verify=certificate[0], timeout=0.5)

        started = time.monotonic()
        (error,) = publisher.publish_batch([sample_cloudevent()])

        assert time.monotonic() - started < 1.5
        assert "timed out" in str(error)
        wait_until(lambda: peer.dropped == 1, 5, "the publisher drops the connection")
