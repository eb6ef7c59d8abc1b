"""docs/guide/publishers.md, ``NatsJetStreamPublisher``: against real NATS servers.

Most tests use the machine's NATS with JetStream (tests/nats_server.py; skipped, saying
why, when it is absent), each with its own stream; the test that kills the server starts
its own ``nats-server -js``. The relay tests run ``orders_outbox_relay`` subprocesses.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from django_orders.cloudevents import CONTENT_TYPE, serialize
from django_orders.models import OutboxEvent
from django_orders.publishers.base import PublishError, Reason
from tests import docs_snippets
from tests.cloudevent_samples import sample_batch, sample_cloudevent
from tests.kafka_broker import free_port
from tests.misbehaving_peers import SilentPeer
from tests.nats_server import (
    NatsServer,
    create_stream,
    delete_stream,
    machine_nats,
    run,
    stream_messages,
    with_jetstream,
)
from tests.outbox_rows import bulk_events
from tests.relay_runs import (
    all_ids,
    all_published,
    assert_in_version_order,
    relay_env,
    relay_once,
    relays,
)
from tests.tcp_proxy import TcpProxy
from tests.waiting import wait_until

pytest.importorskip("nats")

from django_orders.publishers.nats_jetstream import NatsJetStreamPublisher

pytestmark = pytest.mark.nats

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
NATS = "django_orders.publishers.NatsJetStreamPublisher"


@pytest.fixture(scope="module")
def nats_url() -> str:
    return machine_nats()


@pytest.fixture
def prefix() -> str:
    """The subjects of this test: ``<prefix>.…``."""
    return f"test{uuid.uuid4().hex[:12]}"


@pytest.fixture
def stream(nats_url: str, prefix: str) -> Iterator[str]:
    name = create_stream(nats_url, [f"{prefix}.>"])
    yield name
    delete_stream(nats_url, name)


@pytest.fixture
def make_publisher(
    nats_url: str, prefix: str, stream: str
) -> Iterator[Callable[..., NatsJetStreamPublisher]]:
    made: list[NatsJetStreamPublisher] = []

    def make(**options: Any) -> NatsJetStreamPublisher:
        options.setdefault("servers", nats_url)
        options.setdefault("subject", f"{prefix}.{{type}}")
        publisher = NatsJetStreamPublisher(**options)
        made.append(publisher)
        return publisher

    yield make
    for publisher in made:
        publisher.close()


def nats_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name == "django-orders-nats"]


# --- the message --------------------------------------------------------------------------


def test_a_message_is_the_cloudevent_with_its_id_as_nats_msg_id(
    make_publisher: Any, nats_url: str, stream: str, prefix: str
) -> None:
    event = {**sample_cloudevent("order.closed", tenant="shop-3"), "traceparent": TRACEPARENT}

    assert make_publisher().publish_batch([event]) == [None]

    (message,) = stream_messages(nats_url, stream)
    assert message.subject == f"{prefix}.order.closed"
    assert message.data == serialize(event)
    assert message.headers == {
        "Nats-Msg-Id": event["id"],
        "Content-Type": CONTENT_TYPE,
        "traceparent": TRACEPARENT,
    }


def test_the_subject_template_may_use_the_tenant_and_the_order(
    make_publisher: Any, nats_url: str, stream: str, prefix: str
) -> None:
    event = sample_cloudevent("order.created", tenant="shop-9")
    publisher = make_publisher(subject=f"{prefix}.{{tenantid}}.{{subject}}.{{type}}")

    assert publisher.publish_batch([event]) == [None]

    (message,) = stream_messages(nats_url, stream)
    assert message.subject == f"{prefix}.shop-9.{event['subject']}.order.created"


def test_a_batch_is_stored_in_order_with_a_result_per_message(
    make_publisher: Any, nats_url: str, stream: str
) -> None:
    events = sample_batch(300)
    publisher = make_publisher()

    assert publisher.publish_batch(events[:100]) == [None] * 100
    assert publisher.publish_batch(events[100:]) == [None] * 200

    messages = stream_messages(nats_url, stream)
    assert [m.headers["Nats-Msg-Id"] for m in messages] == [e["id"] for e in events]


def test_an_event_sent_again_is_stored_once(
    make_publisher: Any, nats_url: str, stream: str
) -> None:
    """A relay's retry after a lost acknowledgement: JetStream's duplicate window."""
    events = sample_batch(3)
    publisher = make_publisher()

    assert publisher.publish_batch(events) == [None] * 3
    assert publisher.publish_batch(events) == [None] * 3  # acknowledged as duplicates

    assert len(stream_messages(nats_url, stream)) == 3


# --- the guide's consumer ------------------------------------------------------------------


def test_the_guides_durable_consumer_handles_each_event_once_and_remembers(
    make_publisher: Any, nats_url: str, stream: str, prefix: str
) -> None:
    consume = docs_snippets.run("guide/publishers.md", "nats-consumer")["consume"]
    events = sample_batch(30)
    publisher = make_publisher()
    assert publisher.publish_batch(events[:20]) == [None] * 20
    handled: list[dict[str, Any]] = []
    durable = f"billing{uuid.uuid4().hex[:8]}"
    deadline = time.monotonic() + 30

    def until(count: int) -> Callable[[], bool]:
        return lambda: len(handled) >= count or time.monotonic() > deadline

    asyncio.run(consume(nats_url, stream, f"{prefix}.>", durable, handled.append, until(20)))
    assert [e["id"] for e in handled] == [e["id"] for e in events[:20]]

    # Stopped and started again: the durable consumer goes on after what was acknowledged.
    assert publisher.publish_batch(events[10:]) == [None] * 20  # 10 again: stored once
    asyncio.run(consume(nats_url, stream, f"{prefix}.>", durable, handled.append, until(30)))
    assert [e["id"] for e in handled] == [e["id"] for e in events]


# --- failures -----------------------------------------------------------------------------


def test_no_stream_for_the_subject_is_a_permanent_error(make_publisher: Any, nats_url: str) -> None:
    publisher = make_publisher(subject=f"nostream{uuid.uuid4().hex}.{{type}}", timeout=3)

    started = time.monotonic()
    results = publisher.publish_batch(sample_batch(3))

    assert time.monotonic() - started < 3
    assert all(isinstance(r, PublishError) and r.permanent for r in results)
    assert "no stream for subject" in str(results[0])


def test_another_stream_than_the_one_expected_is_a_permanent_error(
    make_publisher: Any, stream: str
) -> None:
    results = make_publisher(stream=f"{stream}_OTHER").publish_batch(sample_batch(2))

    assert all(isinstance(r, PublishError) and r.permanent for r in results)
    assert "expected stream" in str(results[0]).lower()


def test_a_batch_some_of_whose_messages_the_stream_refuses_answers_each_its_own(
    nats_url: str, prefix: str
) -> None:
    """JetStream refuses some messages of a batch (too large for the stream) and stores
    the others, already stored ones acknowledged as duplicates: each event gets its own
    answer, none another's."""

    async def create(connection: Any, jetstream: Any) -> None:
        await jetstream.add_stream(name=name, subjects=[f"{prefix}.>"], max_msg_size=4000)

    name = f"TEST_{uuid.uuid4().hex[:12]}"
    run(with_jetstream(nats_url, create))
    try:
        events = sample_batch(12)
        events[3:9:2] = padded(events[3:9:2], 5000)  # 3, 5, 7: too large
        publisher = NatsJetStreamPublisher(servers=nats_url, subject=f"{prefix}.{{type}}")
        try:
            assert publisher.publish_batch(events[:2]) == [None, None]
            results = publisher.publish_batch(events)
        finally:
            publisher.close()

        refused = [i for i, r in enumerate(results) if r is not None]
        assert refused == [3, 5, 7]
        assert all(isinstance(results[i], PublishError) and results[i].permanent for i in refused)
        stored = [m.headers["Nats-Msg-Id"] for m in stream_messages(nats_url, name)]
        assert stored == [e["id"] for i, e in enumerate(events) if i not in refused]
    finally:
        delete_stream(nats_url, name)


def test_an_invalid_subject_is_a_permanent_error(make_publisher: Any, prefix: str) -> None:
    event = sample_cloudevent(tenant="shop 1")  # a space: not a subject token
    (result,) = make_publisher(subject=f"{prefix}.{{tenantid}}").publish_batch([event])
    assert isinstance(result, PublishError)
    assert result.permanent


def test_an_unreachable_server_is_a_retryable_error(make_publisher: Any) -> None:
    publisher = make_publisher(servers=f"nats://127.0.0.1:{free_port()}", timeout=2)

    started = time.monotonic()
    results = publisher.publish_batch(sample_batch(3))

    assert time.monotonic() - started < 2
    assert all(isinstance(r, PublishError) and not r.permanent for r in results)
    assert {r.reason for r in results if r is not None} == {Reason.UNAVAILABLE}


def test_a_server_that_never_answers_costs_one_timeout() -> None:
    with SilentPeer() as peer:
        publisher = NatsJetStreamPublisher(servers=f"nats://127.0.0.1:{peer.port}", timeout=0.5)
        try:
            started = time.monotonic()
            results = publisher.publish_batch(sample_batch(3))
            assert time.monotonic() - started < 0.5 + 1
            assert all(isinstance(r, PublishError) and not r.permanent for r in results)
            assert {r.reason for r in results if r is not None} <= {
                Reason.TIMEOUT,
                Reason.UNAVAILABLE,
            }
            assert peer.connections == 1
        finally:
            publisher.close()
    assert nats_threads() == []


@contextlib.contextmanager
def own_server(
    timeout: float, server: NatsServer | None = None, servers: str | None = None, **options: Any
) -> Iterator[tuple[NatsServer, NatsJetStreamPublisher, str]]:
    """A ``nats-server -js`` of the test's own (``server``, else a plain one) with a
    stream, and a publisher to it at ``servers`` (else its plain URL) with ``options``
    (closed when the block ends, before the server)."""
    server = server or NatsServer()
    server.start()
    try:
        prefix = f"test{uuid.uuid4().hex[:8]}"
        name = create_stream(server.url, [f"{prefix}.>"])
        publisher = NatsJetStreamPublisher(
            servers=servers or server.url,
            subject=f"{prefix}.{{type}}",
            timeout=timeout,
            **options,
        )
        try:
            yield server, publisher, name
        finally:
            publisher.close()
    finally:
        server.close()


def test_the_server_killed_and_restarted_between_batches() -> None:
    with own_server(timeout=2) as (server, publisher, name):
        assert publisher.publish_batch(sample_batch(2)) == [None, None]
        server.kill()
        down = publisher.publish_batch(sample_batch(2))
        assert all(isinstance(r, PublishError) and not r.permanent for r in down)
        server.start()
        assert publisher.publish_batch(sample_batch(2)) == [None, None]
        assert len(stream_messages(server.url, name)) == 4


def test_the_server_killed_with_two_batches_waiting_for_acknowledgements() -> None:
    """Paused, then killed: the two batches in flight never get their acknowledgements.
    Each fails, retryable, by its deadline, leaves nothing waiting, and the server started
    again takes the next batch on a new connection."""
    with own_server(timeout=1) as (server, publisher, name):
        assert publisher.publish_batch(sample_batch(2)) == [None, None]
        server.pause()
        started = time.monotonic()
        in_flight = [publisher.start_batch(sample_batch(5)) for _ in range(2)]
        server.kill()
        for batch in in_flight:
            results = batch.wait()
            assert all(isinstance(r, PublishError) and not r.permanent for r in results)
        assert time.monotonic() - started < 1 + 0.5  # LOOP_GRACE is 1
        assert publisher._waiting == {}
        server.start()
        # The first batch after the restart may still spend its deadline on the dead
        # connection; the relay sends a failed batch again, and so does this test, bounded.
        # Nats-Msg-Id stores each event once however often it is sent.
        batch, deadline = sample_batch(3), time.monotonic() + 10
        while (results := publisher.publish_batch(batch)) != [None] * 3:
            assert all(isinstance(r, PublishError) and not r.permanent for r in results)
            assert time.monotonic() < deadline, results
        assert len(stream_messages(server.url, name)) == 2 + 3


def test_a_batch_that_gives_up_on_a_lost_connection_leaves_the_new_one_alone(
    make_publisher: Any, nats_url: str, stream: str
) -> None:
    """Batch A's connection is cut while its acknowledgements are on the way; the next
    batch connects anew. When A gives up at its deadline it drops its own connection, not
    the new one another batch is still waiting on."""
    host, port = nats_url.rpartition("/")[2].split(":")
    proxy = TcpProxy((host, int(port)))
    try:
        publisher = make_publisher(servers=f"nats://127.0.0.1:{proxy.port}", timeout=2)
        assert publisher.publish_batch(sample_batch(1)) == [None]
        stored = 1

        def stored_in_stream(count: int) -> Callable[[], bool]:
            return lambda: len(stream_messages(nats_url, stream)) == count

        proxy.replies.clear()  # the server's answers held: acknowledgements on the way
        first = publisher.start_batch(sample_batch(3))
        stored += 3
        wait_until(stored_in_stream(stored), 10, "the first batch stored")
        lost = publisher._connection
        proxy.cut()
        wait_until(lambda: not lost.is_connected, 10, "the client saw its connection cut")
        assert publisher.publish_batch(sample_batch(1)) == [None]  # a new connection
        stored += 1
        proxy.replies.clear()
        publisher.timeout = 10  # the later batch's deadline well after the first one's
        later = publisher.start_batch(sample_batch(3))
        stored += 3
        wait_until(stored_in_stream(stored), 10, "the later batch stored")
        assert not first._future.done()  # type: ignore[attr-defined]

        assert {r.reason for r in first.wait() if r is not None} == {Reason.TIMEOUT}
        proxy.replies.set()
        assert later.wait() == [None] * 3
    finally:
        proxy.close()


def padded(events: list[dict[str, Any]], size: int) -> list[dict[str, Any]]:
    """``events`` with ``size`` more bytes of data each."""
    return [{**e, "data": {**e["data"], "note": "x" * size}} for e in events]


def test_a_server_paused_mid_batch_costs_the_batch_its_deadline_and_no_more() -> None:
    """SIGSTOP: the server reads nothing. A batch bigger than the socket buffers and
    nats-py's own (2 MB) blocks ``publish()`` in a forced flush, where nats-py swallows the
    cancellation of the batch's deadline (``Client._flush_pending``), and closing the
    connection waits for a socket nobody reads: each batch still ends at its deadline,
    leaves no message waiting and drops the connection; resumed, the next batch goes
    through."""
    with own_server(timeout=1) as (server, publisher, _):
        assert publisher.publish_batch(sample_batch(1)) == [None]
        events = padded(sample_batch(2000), 4000)  # ~9 MB
        server.pause()
        try:
            for _ in range(2):
                started = time.monotonic()
                results = publisher.publish_batch(events)
                assert time.monotonic() - started < 1 + 0.5  # LOOP_GRACE is 1
                assert all(isinstance(r, PublishError) and not r.permanent for r in results)
                assert {r.reason for r in results if r is not None} <= {
                    Reason.TIMEOUT,
                    Reason.UNAVAILABLE,
                }
                assert publisher._waiting == {}
                assert publisher._connection is None
        finally:
            server.resume()
        assert publisher.publish_batch(events[:10]) == [None] * 10


@contextlib.contextmanager
def core_subscriber(url: str, subject: str, answer: bytes | None) -> Iterator[None]:
    """A plain NATS subscriber on ``subject`` (no stream captures it) on a loop of its
    own: it answers each message with ``answer``, or never when ``None``."""
    import nats

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def on_message(message: Any) -> None:
        if answer is not None:
            await message.respond(answer)

    async def subscribe() -> Any:
        connection = await nats.connect(url)
        await connection.subscribe(subject, cb=on_message)
        await connection.flush()
        return connection

    connection = asyncio.run_coroutine_threadsafe(subscribe(), loop).result(10)
    try:
        yield
    finally:
        asyncio.run_coroutine_threadsafe(connection.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_no_acknowledgement_by_the_deadline_is_a_timeout_and_nothing_waits_on(
    make_publisher: Any, nats_url: str
) -> None:
    """Messages delivered, acknowledgements never coming (a subscriber that is not a
    stream): the batch fails as a timeout at its deadline, then forgets them."""
    silent = f"silent{uuid.uuid4().hex[:8]}"
    publisher = make_publisher(subject=f"{silent}.{{type}}", timeout=0.5)
    with core_subscriber(nats_url, f"{silent}.>", answer=None):
        started = time.monotonic()
        results = publisher.publish_batch(sample_batch(3))
        assert time.monotonic() - started < 0.5 + 1
    assert {r.reason for r in results if r is not None} == {Reason.TIMEOUT}
    assert all(r is not None and not r.permanent for r in results)
    assert publisher._waiting == {}


@pytest.mark.parametrize(
    "answer", [b"hello", b"[1]", b'{"seq": 1}', b'{"error": "no"}', b"[" * 100_000]
)
def test_an_answer_that_is_no_pub_ack_is_a_retryable_error(
    make_publisher: Any, nats_url: str, answer: bytes
) -> None:
    other = f"other{uuid.uuid4().hex[:8]}"
    publisher = make_publisher(subject=f"{other}.{{type}}", timeout=3)
    with core_subscriber(nats_url, f"{other}.>", answer=answer):
        results = publisher.publish_batch(sample_batch(2))
    assert all(isinstance(r, PublishError) and not r.permanent for r in results)
    assert "not a JetStream acknowledgement" in str(results[0])


def test_asking_jetstream_for_the_stream_keeps_the_batchs_deadline() -> None:
    """No responders for the message, and JetStream's API does not answer the question
    which stream captures the subject (a plain server with a subscriber on the API that
    never answers, as a JetStream electing its leader): the batch still ends at its
    deadline, retryable."""
    server = NatsServer(jetstream=False)
    server.start()
    try:
        publisher = NatsJetStreamPublisher(
            servers=server.url, subject=f"nostream{uuid.uuid4().hex[:8]}.{{type}}", timeout=1
        )
        try:
            with core_subscriber(server.url, "$JS.API.>", answer=None):
                started = time.monotonic()
                results = publisher.publish_batch(sample_batch(2))
                assert time.monotonic() - started < 1 + 0.5  # LOOP_GRACE is 1
            assert all(isinstance(r, PublishError) and not r.permanent for r in results)
            assert "did not answer" in str(results[0])
        finally:
            publisher.close()
    finally:
        server.close()


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"subject": "orders.{kind}"}, "kind"),
        ({"subject": ""}, "subject"),
        ({"subject": "orders.{type"}, "template"),
        ({"connect_options": ["token"]}, "connect_options"),
    ],
)
def test_bad_options_are_configuration_errors(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=match):
        NatsJetStreamPublisher(**options)
    assert nats_threads() == []


def sockets_to(port: int) -> int:
    """How many of this process's TCP sockets are connected to 127.0.0.1:``port``
    (Linux: ``/proc``)."""
    ours = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:["):
                ours.add(target[len("socket:[") : -1])
    count = 0
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with open(table) as rows:
            next(rows)
            for row in rows:
                fields = row.split()
                remote_port = int(fields[2].rpartition(":")[2], 16)
                if remote_port == port and fields[9] in ours:
                    count += 1
    return count


def assert_closing_on_a_paused_server_lets_go(
    server: NatsServer, publisher: NatsJetStreamPublisher, port: int
) -> None:
    """``publisher``'s connection to ``port`` of ``server``, paused with more in flight
    than the socket buffers and nats-py hold: ``close()`` leaves no socket open."""
    assert publisher.publish_batch(sample_batch(1)) == [None]
    assert sockets_to(port) == 1
    server.pause()
    try:
        results = publisher.publish_batch(padded(sample_batch(2000), 4000))  # ~9 MB
        assert all(isinstance(r, PublishError) for r in results)
        publisher.close()
        assert sockets_to(port) == 0
    finally:
        server.resume()


@pytest.mark.skipif(not os.path.exists("/proc/self/net/tcp"), reason="counts sockets in /proc")
def test_closing_while_the_server_reads_nothing_lets_go_of_the_socket() -> None:
    """A paused server never takes what the client still has to write: closed gracefully,
    the socket would stay open (and its transport, collected later, warn "unclosed
    transport"). The publisher's close() lets go of it at once."""
    with own_server(timeout=1) as (server, publisher, _):
        assert_closing_on_a_paused_server_lets_go(server, publisher, server.port)


def tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """A CA, and a certificate for 127.0.0.1 it signed, with its key (``openssl``)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    ca, ca_key = directory / "ca.pem", directory / "ca.key"
    cert, key, request = (
        directory / "server.pem",
        directory / "server.key",
        directory / "server.csr",
    )
    extensions = directory / "server.ext"
    extensions.write_text(
        "subjectAltName=IP:127.0.0.1\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\nauthorityKeyIdentifier=keyid\n"
    )
    for command in (
        "req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=test-CA"
        " -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign"
        f" -keyout {ca_key} -out {ca}",
        f"req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout {key} -out {request}",
        f"x509 -req -in {request} -CA {ca} -CAkey {ca_key} -CAcreateserial -days 1"
        f" -extfile {extensions} -out {cert}",
    ):
        subprocess.run([openssl, *command.split()], check=True, capture_output=True)
    return ca, cert, key


@pytest.mark.skipif(not os.path.exists("/proc/self/net/tcp"), reason="counts sockets in /proc")
def test_closing_a_tls_connection_while_the_server_reads_nothing_lets_go_of_it(
    tmp_path: Path,
) -> None:
    """The same over TLS: nats-py's TLS stream over the plain one it upgraded; aborting
    the TLS transport, then the plain one (already let go: nothing more), frees the
    socket."""
    ca, cert, key = tls_files(tmp_path)
    server = NatsServer(tls=(cert, key))  # the stream made plainly: allow_non_tls
    tls = {"tls": ssl.create_default_context(cafile=str(ca))}
    url = f"tls://127.0.0.1:{server.port}"
    with own_server(1, server, url, connect_options=tls) as (server, publisher, _):
        assert_closing_on_a_paused_server_lets_go(server, publisher, server.port)


# nats-py hands aiohttp its connect timeout as a float, which aiohttp 3.10+ deprecates.
@pytest.mark.filterwarnings("ignore:parameter 'timeout':DeprecationWarning")
@pytest.mark.skipif(not os.path.exists("/proc/self/net/tcp"), reason="counts sockets in /proc")
def test_closing_a_websocket_connection_while_the_server_reads_nothing_lets_go_of_it() -> None:
    """The same over nats-py's WebSocket transport (``ws://``, with aiohttp installed),
    which drops its socket from view once its own close is done: that socket, closing
    gracefully on a server that reads nothing, would stay open."""
    pytest.importorskip("aiohttp")
    server = NatsServer(websocket=True)
    assert server.ws_port is not None
    with own_server(1, server, server.ws_url) as (server, publisher, _):
        assert_closing_on_a_paused_server_lets_go(server, publisher, server.ws_port)


def test_without_nats_py_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nats", None)
    with pytest.raises(ImproperlyConfigured, match=r"django-orders\[nats\]"):
        NatsJetStreamPublisher()


def test_close_ends_the_loop_thread(make_publisher: Any) -> None:
    publisher = make_publisher()
    assert publisher.publish_batch(sample_batch(1)) == [None]
    thread = publisher._thread
    assert thread.name == "django-orders-nats"
    assert thread.is_alive()
    publisher.close()
    assert not thread.is_alive()


# --- through the relay --------------------------------------------------------------------


def nats_args(url: str, prefix: str, **options: Any) -> tuple[str, ...]:
    options = {"servers": url, "subject": f"{prefix}.{{type}}", **options}
    return ("--publisher", NATS, "--publisher-options", json.dumps(options))


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres
@pytest.mark.slow
def test_two_relays_publish_everything_once_in_order_per_order(
    nats_url: str, prefix: str, stream: str, log_dir: Path
) -> None:
    env = relay_env(None, OUTBOX_POLL_INTERVAL=0.1)
    with relays(log_dir, 2, env, "--batch-size", "10", *nats_args(nats_url, prefix)) as running:
        for relay in running:
            relay.wait_started()
        bulk_events(300, versions=3)
        expected = all_ids()
        all_published(running, 60)
        for relay in running:
            relay.signal(signal.SIGTERM)
        assert [relay.wait(15) for relay in running] == [0, 0]
    assert all("outbox batch" in relay.output() for relay in running)

    events = [json.loads(m.data) for m in stream_messages(nats_url, stream)]
    assert sorted(e["id"] for e in events) == sorted(expected)  # each once
    assert_in_version_order(events)


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_sigterm_stops_a_relay_cleanly(
    nats_url: str, prefix: str, stream: str, log_dir: Path
) -> None:
    bulk_events(2000, versions=1)
    env = relay_env(None)
    with relays(log_dir, 1, env, "--batch-size", "10", *nats_args(nats_url, prefix)) as (relay,):
        wait_until(
            lambda: OutboxEvent.objects.filter(status="published").count() >= 50,
            30,
            "first batches",
        )
        signalled = time.monotonic()
        relay.signal(signal.SIGTERM)
        assert relay.wait(15) == 0, relay.output()
        assert time.monotonic() - signalled < 5
    published = {
        str(pk)
        for pk in OutboxEvent.objects.filter(status="published").values_list("id", flat=True)
    }
    assert published < all_ids()
    assert not OutboxEvent.objects.filter(lease_token__isnull=False).exists()
    stored = {m.headers["Nats-Msg-Id"] for m in stream_messages(nats_url, stream)}
    assert published <= stored


@pytest.mark.django_db(transaction=True)
def test_no_stream_makes_the_events_dead(nats_url: str) -> None:
    bulk_events(3, versions=1)
    subject = f"nostream{uuid.uuid4().hex}.{{type}}"
    assert relay_once(NATS, servers=nats_url, subject=subject, timeout=3) == 1
    assert set(OutboxEvent.objects.values_list("status", "attempts")) == {("dead", 1)}
    assert "no stream for subject" in OutboxEvent.objects.first().last_error  # type: ignore[union-attr]


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_the_server_killed_and_restarted_mid_run_loses_nothing(log_dir: Path) -> None:
    """SIGKILL of the NATS server while the relay publishes; started again on the same
    store: every event is in the stream, once (Nats-Msg-Id), in order per order."""
    bulk_events(500, versions=3)
    expected = all_ids()
    server = NatsServer()
    server.start()
    try:
        prefix = f"test{uuid.uuid4().hex[:8]}"
        name = create_stream(server.url, [f"{prefix}.>"])
        env = relay_env(None, OUTBOX_POLL_INTERVAL=0.1, OUTBOX_BACKOFF_MAX=1)
        args = ("--batch-size", "20", *nats_args(server.url, prefix, timeout=3))
        with relays(log_dir, 1, env, *args) as (relay,):
            wait_until(
                lambda: OutboxEvent.objects.filter(status="published").count() >= 300,
                30,
                "first batches",
            )
            server.kill()
            assert OutboxEvent.objects.exclude(status="published").exists()
            wait_until(
                lambda: (
                    OutboxEvent.objects.filter(status="pending").exclude(last_error="").exists()
                ),
                30,
                "failed attempts while the server is down",
            )
            server.start()
            all_published([relay], 90)
            relay.signal(signal.SIGTERM)
            assert relay.wait(15) == 0, relay.output()
        events = [json.loads(m.data) for m in stream_messages(server.url, name)]
    finally:
        server.close()
    assert sorted(e["id"] for e in events) == sorted(expected)
    assert_in_version_order(events)
    assert not OutboxEvent.objects.filter(status="dead").exists()
