#!/usr/bin/env python
"""Relay benchmark (issue 4): the outbox relay against bare publish loops, same run.

    .venv/bin/python bench/run_relay.py                 # everything (~10 minutes)
    .venv/bin/python bench/run_relay.py --only webhook --events 5000 --rounds 1   # smoke

Each relay figure: start ``manage.py orders_outbox_relay`` process(es) on an empty outbox
and wait until they are listening; insert N events in one transaction (one per order, as
a burst of creates leaves them); the relays wake on its NOTIFY. Throughput is
N / (last ``published_at`` − commit of the insert). Each reference: the same number of
pre-serialised CloudEvents sent by a bare loop with the same client library and settings,
no database. Ratios are taken within a round; medians over rounds are reported.

Parts (``--only``): webhook, rabbitmq, redis, batch, scaling, latency, claim, steady.
``--observe`` (issue 12): the events carry a ``traceparent``, the relays trace with
OpenTelemetry's SDK (spans batched, then dropped) and serve Prometheus metrics — what
observability costs per event, against a run without.
Results: bench/results/relay-<stamp>.json, -latest.json, -latest.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple

from harness import (
    BENCH_DIR,
    REPO_DIR,
    RESULTS_DIR,
    arg_parser,
    django_env,
    finish_run,
    fmt_int,
    fmt_ratio,
    median,
    run_header,
    start_run,
    stop_process,
)

TENANT = "bench-relay"
SECRET = "whsec_" + "YmVuY2gtc2VjcmV0LWJlbmNoLXNlY3JldC0xMjM0NTY="
AMQP_URL = os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
EXCHANGE = "bench.orders.events"  # not the default name: other users of the broker
QUEUE = "bench.orders"
STREAM = "bench.orders.events"
RAW_STREAM = "bench.orders.raw"
WEBHOOK = "django_orders.publishers.WebhookPublisher"
RABBITMQ = "django_orders.publishers.RabbitMQPublisher"
REDIS = "django_orders.publishers.RedisStreamPublisher"


def relay_arg_parser(doc: str | None, parts: list[str]) -> argparse.ArgumentParser:
    """The options this script shares with run_relay_brokers.py; ``--only`` picks ``parts``."""
    p = arg_parser(doc)
    p.add_argument("--events", type=int, default=20_000, help="events per run [20000]")
    p.add_argument("--batch-size", type=int, default=100, help="relay batch size [100]")
    p.add_argument("--only", action="append", choices=parts, help=f"parts [{','.join(parts)}]")
    p.add_argument("--latency-events", type=int, default=600)
    p.add_argument("--latency-rate", type=float, default=50.0, help="commits per second")
    return p


PARTS = ["webhook", "rabbitmq", "redis", "batch", "scaling", "latency", "claim", "steady"]


def parse_args() -> argparse.Namespace:
    p = relay_arg_parser(__doc__, PARTS)
    p.add_argument(
        "--concurrency",
        type=int,
        default=16,
        help="webhook requests in flight (publisher's max_concurrency) [16]",
    )
    p.add_argument("--relays", default="1,2,4", help="relay counts for scaling [1,2,4]")
    p.add_argument(
        "--steady-events", type=int, default=10_000, help="burst size of the steady part [10000]"
    )
    p.add_argument("--port", type=int, default=8099)
    p.add_argument(
        "--observe",
        action="store_true",
        help="traced events, relays with OpenTelemetry's SDK and --metrics-port",
    )
    return p.parse_args()


# -- processes -------------------------------------------------------------------------


class Receiver:
    """bench/receiver.py in its own process."""

    def __init__(self, port: int, record: bool = False) -> None:
        self.url = f"http://127.0.0.1:{port}"
        cmd = [sys.executable, str(BENCH_DIR / "receiver.py"), "--port", str(port)]
        if record:
            cmd.append("--record")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, start_new_session=True)
        assert self.proc.stdout is not None
        self.proc.stdout.readline()  # "receiver listening on …"

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=30) as resp:
            return json.loads(resp.read())

    def stop(self) -> None:
        stop_process(self.proc)


def start_relays(
    count: int,
    publisher: str,
    options: dict[str, Any],
    *,
    batch_size: int,
    listen: bool = True,
    observe: bool = False,
) -> list[subprocess.Popen]:
    """``count`` relay processes (``manage.py orders_outbox_relay``), ready to claim."""
    procs, logs = [], []
    for i in range(count):
        log_path = RESULTS_DIR / f"relay-{i}.log"
        log_path.write_text("")
        cmd = [
            sys.executable,
            "-m",
            "django",
            "orders_outbox_relay",
            "--publisher",
            publisher,
            "--publisher-options",
            json.dumps(options),
            "--batch-size",
            str(batch_size),
        ]
        if not listen:
            cmd.append("--no-listen")
        if observe:
            cmd += ["--metrics-port", "0", "--metrics-address", "127.0.0.1"]
        log = open(log_path, "ab")  # noqa: SIM115
        procs.append(
            subprocess.Popen(
                cmd,
                env=django_env(BENCH_ORDERS_LOG="INFO", **({"BENCH_OTEL": "1"} if observe else {})),
                cwd=REPO_DIR,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        logs.append(log_path)
    deadline = time.monotonic() + 60
    for proc, log_path in zip(procs, logs, strict=True):
        while "Outbox relay started" not in log_path.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"relay did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.05)
    return procs


def stop_relays(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        stop_process(proc, timeout=20)


# -- the outbox --------------------------------------------------------------------------


def sql(statement: str, params: list[Any] | None = None) -> list[tuple]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(statement, params or [])
        return cursor.fetchall() if cursor.description else []


def truncate_outbox() -> None:
    sql("TRUNCATE django_orders_outbox_event")


def insert_events(
    count: int, *, analyze: bool = True, status: str = "pending", traced: bool = False
) -> float:
    """Insert ``count`` order.created events (one per order) in one transaction with a
    NOTIFY, as the package writes them; returns the wall-clock time of the commit.

    ``analyze`` runs ANALYZE in the same transaction (it counts the transaction's own new
    rows), so the relays' claim query is planned with statistics that know the backlog;
    see ``claim_part`` for what happens without. ``traced`` gives each event a
    ``traceparent`` of its own, as recording under a request's span does.
    """
    from django.db import transaction

    with transaction.atomic():
        sql(
            """
            INSERT INTO django_orders_outbox_event
                (id, tenant_id, aggregate_type, aggregate_id, aggregate_version, type,
                 payload, created_at, status, attempts, available_at, lease_token,
                 leased_until, last_error, published_at, extensions)
            SELECT gen_random_uuid(), %s, 'order', oid, 1, 'order.created',
                   jsonb_build_object(
                       'id', oid::text, 'tenantId', %s, 'status', 'draft', 'version', 1,
                       'totalCents', 1234, 'currency', 'EUR',
                       'metadata', jsonb_build_object('source', 'bench'),
                       'createdAt', to_char(ts AT TIME ZONE 'UTC',
                                            'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                       'updatedAt', to_char(ts AT TIME ZONE 'UTC',
                                            'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                       'confirmedAt', NULL, 'closedAt', NULL),
                   ts, %s, 0, ts, NULL, NULL, '',
                   CASE WHEN %s = 'published' THEN ts END,
                   CASE WHEN %s THEN jsonb_build_object(
                       'traceparent',
                       '00-' || md5(oid::text) || '-' || left(md5(ts::text), 16) || '-01')
                   ELSE '{}'::jsonb END
            FROM (SELECT gen_random_uuid() AS oid,
                         now() + g * interval '1 microsecond' AS ts
                  FROM generate_series(1, %s) AS g) AS s
            """,
            [TENANT, TENANT, status, status, traced, count],
        )
        if analyze:
            sql("ANALYZE django_orders_outbox_event")
        sql("NOTIFY django_orders_outbox")
    return time.time()


def outbox_counts() -> dict[str, int]:
    rows = sql(
        "SELECT status, count(*), sum(attempts) FROM django_orders_outbox_event GROUP BY status"
    )
    counts = {status: n for status, n, _ in rows}
    counts["attempts"] = sum(a or 0 for _, _, a in rows)
    return counts


def wait_published(count: int, timeout: float) -> float:
    """Wait until ``count`` events are published; returns the last ``published_at``."""
    deadline = time.monotonic() + timeout
    while True:
        pending = sql(
            "SELECT count(*) FROM django_orders_outbox_event WHERE status <> 'published'"
        )[0][0]
        if pending == 0:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"{pending} events still unpublished after {timeout}s")
        time.sleep(0.25)
    (last,) = sql("SELECT extract(epoch FROM max(published_at)) FROM django_orders_outbox_event")[0]
    return float(last)


def relay_throughput(
    args: argparse.Namespace,
    publisher: str,
    options: dict[str, Any],
    *,
    relays: int = 1,
    warm_up: bool = False,
) -> dict[str, Any]:
    """``args.events`` events committed at once, drained by ``relays`` relay processes
    started just before; with ``warm_up``, one event is published first (not timed): the
    clients' start-up (connections, the Kafka producer id) stays out of the time."""
    truncate_outbox()
    procs = start_relays(
        relays, publisher, options, batch_size=args.batch_size, observe=args.observe
    )
    try:
        if warm_up:
            insert_events(1, analyze=False)
            wait_published(1, timeout=30)
        committed = insert_events(args.events, traced=args.observe)
        last = wait_published(args.events, timeout=max(120, args.events / 100))
    finally:
        stop_relays(procs)
    counts = outbox_counts()
    seconds = last - committed
    return {
        "events": args.events,
        "relays": relays,
        "seconds": round(seconds, 3),
        "rate": args.events / seconds,
        "attempts": counts["attempts"],
        "dead": counts.get("dead", 0),
    }


# -- what the bare loops send -------------------------------------------------------------


def sample_events(count: int) -> list[dict[str, Any]]:
    """CloudEvents shaped exactly as the relay builds them (to_cloudevent)."""
    from django_orders.cloudevents import DATA_CONTENT_TYPE, SPECVERSION
    from django_orders.conf import orders_settings

    stamp = "2026-11-25T18:00:00.000000Z"
    events = []
    for _ in range(count):
        oid = str(uuid.uuid4())
        events.append(
            {
                "specversion": SPECVERSION,
                "id": str(uuid.uuid4()),
                "source": orders_settings.EVENT_SOURCE,
                "type": "order.created",
                "subject": oid,
                "time": stamp,
                "datacontenttype": DATA_CONTENT_TYPE,
                "tenantid": TENANT,
                "data": {
                    "id": oid,
                    "tenantId": TENANT,
                    "status": "draft",
                    "version": 1,
                    "totalCents": 1234,
                    "currency": "EUR",
                    "metadata": {"source": "bench"},
                    "createdAt": stamp,
                    "updatedAt": stamp,
                    "confirmedAt": None,
                    "closedAt": None,
                },
            }
        )
    return events


def _signed(event: dict[str, Any], keys: list[bytes]) -> tuple[bytes, dict[str, str]]:
    """Body and headers of one webhook, as the publisher builds them (serialise, sign)."""
    from django_orders.cloudevents import CONTENT_TYPE, serialize
    from django_orders.publishers.webhook import sign

    body = serialize(event)
    stamp = int(time.time())
    return body, {
        "Content-Type": CONTENT_TYPE,
        "webhook-id": event["id"],
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign(keys, event["id"], stamp, body),
    }


def _run_senders(items: list, concurrency: int, make_sender: Any) -> dict[str, Any]:
    """``concurrency`` threads, each with its own sender, take the next event under a lock
    until none is left (the publisher's own hand-over); returns the rate."""
    from django_orders.publishers.webhook import take_turns

    statuses: list[int] = [0] * len(items)
    work = take_turns(items, statuses)
    senders = [make_sender() for _ in range(concurrency)]
    for send in senders:  # open the connections before the clock starts
        send(items[0])
    threads = [threading.Thread(target=work, args=(send,)) for send in senders]
    started = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.time() - started
    bad = sum(1 for st in statuses if st != 200)
    return {
        "events": len(items),
        "seconds": round(seconds, 3),
        "rate": len(items) / seconds,
        "errors": bad,
    }


def bare_webhook(url: str, events: list[dict[str, Any]], concurrency: int) -> dict[str, Any]:
    """The publisher's HTTP client, the standard library's ``http.client``: one kept-alive
    connection per thread, ``concurrency`` threads, each event serialised and signed as it
    is sent (what any webhook sender does), no database: the ceiling of what a relay can
    deliver with this client."""
    import http.client
    from urllib.parse import urlsplit

    from django_orders.publishers.webhook import signing_key

    parts = urlsplit(url)
    keys = [signing_key(SECRET)]

    def make_sender() -> Any:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)

        def send(event: dict[str, Any]) -> int:
            body, headers = _signed(event, keys)
            conn.request("POST", parts.path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            return response.status

        return send

    return _run_senders(events, concurrency, make_sender)


def bare_webhook_httpx(url: str, events: list[dict[str, Any]], concurrency: int) -> dict[str, Any]:
    """The same loop with one shared ``httpx.Client`` (keep-alive): context for the
    publisher's choice of ``http.client``."""
    import httpx

    from django_orders.publishers.webhook import signing_key

    keys = [signing_key(SECRET)]
    client = httpx.Client(
        timeout=httpx.Timeout(10.0),
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        follow_redirects=False,
    )

    def send(event: dict[str, Any]) -> int:
        body, headers = _signed(event, keys)
        return client.post(url, content=body, headers=headers).status_code

    try:
        return _run_senders(events, concurrency, lambda: send)
    finally:
        client.close()


class RawAmqp:
    """pika ``SelectConnection``, publisher confirms handled asynchronously, ``window``
    messages in flight (then wait for their confirms): the same library, confirms and
    message properties as the RabbitMQ publisher, no database."""

    def __init__(self, events: list[dict[str, Any]], window: int) -> None:
        import pika

        from django_orders.cloudevents import CONTENT_TYPE, serialize

        self.pika = pika
        self.window = window
        self.messages = [
            (
                e["type"],
                serialize(e),
                pika.BasicProperties(
                    content_type=CONTENT_TYPE,
                    delivery_mode=2,
                    message_id=e["id"],
                    type=e["type"],
                    app_id="django-orders",
                    headers={"tenantid": e["tenantid"]},
                ),
            )
            for e in events
        ]
        self.sent = 0
        self.pending: deque[int] = deque()
        self.nacked = 0
        self.returned = 0

    def run(self) -> dict[str, Any]:
        pika = self.pika
        self.conn = pika.SelectConnection(pika.URLParameters(AMQP_URL), on_open_callback=self._open)
        self.conn.ioloop.start()
        seconds = self.finished - self.started
        return {
            "events": len(self.messages),
            "window": self.window,
            "seconds": round(seconds, 3),
            "rate": len(self.messages) / seconds,
            "errors": self.nacked + self.returned,
        }

    def _open(self, conn: Any) -> None:
        conn.channel(on_open_callback=self._channel)

    def _channel(self, channel: Any) -> None:
        self.channel = channel
        channel.add_on_return_callback(self._returned)
        channel.confirm_delivery(ack_nack_callback=self._confirm, callback=self._ready)

    def _returned(self, *args: Any) -> None:
        self.returned += 1

    def _ready(self, frame: Any) -> None:
        self.started = time.time()
        self._publish_window()

    def _publish_window(self) -> None:
        tag = self.sent
        for routing_key, body, properties in self.messages[self.sent : self.sent + self.window]:
            self.channel.basic_publish(EXCHANGE, routing_key, body, properties, mandatory=True)
            tag += 1
            self.pending.append(tag)
        self.sent = tag

    def _confirm(self, frame: Any) -> None:
        method = frame.method
        if isinstance(method, self.pika.spec.Basic.Nack):
            self.nacked += 1
        if method.multiple:
            while self.pending and self.pending[0] <= method.delivery_tag:
                self.pending.popleft()
        else:
            with contextlib.suppress(ValueError):
                self.pending.remove(method.delivery_tag)
        if not self.pending:
            if self.sent < len(self.messages):
                self._publish_window()
            else:
                self.finished = time.time()
                self.conn.close()
                self.conn.ioloop.stop()


def publisher_alone(
    path: str, options: dict[str, Any], events: list[dict[str, Any]], batch_size: int
) -> dict[str, Any]:
    """The package's publisher without the relay: batches of ``batch_size`` CloudEvents
    (dicts, serialised by the publisher as in the relay) handed over as the relay does,
    ``max_batches_in_flight`` at a time, no database. The publisher's own ceiling: the
    relay divided by it is what the database work costs."""
    from django.utils.module_loading import import_string

    publisher = import_string(path)(**options)
    window = max(1, int(getattr(publisher, "max_batches_in_flight", 1)))
    errors = 0
    try:
        assert not any(publisher.publish_batch(events[:1]))  # connect outside the timing
        in_flight: deque[Any] = deque()
        started = time.time()
        for start in range(1, len(events), batch_size):
            in_flight.append(publisher.start_batch(events[start : start + batch_size]))
            while len(in_flight) >= window:
                errors += sum(r is not None for r in in_flight.popleft().wait())
        while in_flight:
            errors += sum(r is not None for r in in_flight.popleft().wait())
        seconds = time.time() - started
    finally:
        publisher.close()
    return {
        "events": len(events) - 1,
        "batch_size": batch_size,
        "seconds": round(seconds, 3),
        "rate": (len(events) - 1) / seconds,
        "errors": errors,
    }


def amqp_setup(purge_only: bool = False) -> int:
    import pika

    conn = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    ch = conn.channel()
    if not purge_only:
        ch.exchange_declare(EXCHANGE, "topic", durable=True)
        ch.queue_declare(QUEUE, durable=True)
        ch.queue_bind(QUEUE, EXCHANGE, "#")
    n = ch.queue_purge(QUEUE).method.message_count
    conn.close()
    return n


def amqp_teardown() -> None:
    import pika

    conn = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    ch = conn.channel()
    ch.queue_delete(QUEUE)
    ch.exchange_delete(EXCHANGE)
    conn.close()


def raw_redis(events: list[dict[str, Any]], window: int) -> dict[str, Any]:
    """redis-py, ``XADD`` of the publisher's fields, pipelined ``window`` at a time
    (``window`` 1: one round trip per event), no database."""
    import redis

    from django_orders.cloudevents import serialize

    client = redis.Redis.from_url(REDIS_URL)
    client.delete(RAW_STREAM)
    fields = [
        {"id": e["id"], "type": e["type"], "tenantid": e["tenantid"], "event": serialize(e)}
        for e in events
    ]
    started = time.time()
    for start in range(0, len(fields), window):
        chunk = fields[start : start + window]
        if window == 1:
            client.xadd(RAW_STREAM, chunk[0])
            continue
        pipe = client.pipeline(transaction=False)
        for f in chunk:
            pipe.xadd(RAW_STREAM, f)
        pipe.execute()
    seconds = time.time() - started
    added = client.xlen(RAW_STREAM)
    client.delete(RAW_STREAM)
    client.close()
    return {
        "events": len(events),
        "window": window,
        "seconds": round(seconds, 3),
        "rate": len(events) / seconds,
        "errors": len(events) - added,
    }


def redis_stream_length(delete: bool = False) -> int:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    n = client.xlen(STREAM)
    if delete:
        client.delete(STREAM)
    client.close()
    return n


class Broker(NamedTuple):
    """A broker of the rabbitmq, redis and batch parts: its publisher and options, the
    bare loop (``raw(events, window)``) and its windows, and ``drain()``, which empties
    what the relay published to and says how many messages it held (stored as ``held``)."""

    name: str
    publisher: str
    options: dict[str, Any]
    raw: Callable[[list[dict[str, Any]], int], dict[str, Any]]
    windows: tuple[int, ...]
    drain: Callable[[], int]
    held: str


RABBITMQ_BROKER = Broker(
    "rabbitmq",
    RABBITMQ,
    {"url": AMQP_URL, "exchange": EXCHANGE},
    raw=lambda events, window: RawAmqp(events, window).run(),
    windows=(100, 1000),
    drain=lambda: amqp_setup(purge_only=True),
    held="in_queue",
)
REDIS_BROKER = Broker(
    "redis",
    REDIS,
    {"url": REDIS_URL, "stream": STREAM},
    raw=raw_redis,
    windows=(1, 100),
    drain=lambda: redis_stream_length(delete=True),
    held="in_stream",
)


def create_orders_at_rate(args: argparse.Namespace) -> dict[str, float]:
    """``--latency-events`` orders created one by one through the domain layer at
    ``--latency-rate`` per second (each commit's NOTIFY wakes a listening relay); returns
    each order's commit time by id."""
    from django_orders import services

    committed: dict[str, float] = {}
    interval = 1.0 / args.latency_rate
    next_at = time.monotonic()
    for _ in range(args.latency_events):
        order = services.create_order(TENANT, total_cents=1)
        committed[str(order.id)] = time.time()
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))
    return committed


# -- parts -------------------------------------------------------------------------------


def webhook_part(args, rounds: list[dict[str, Any]]) -> None:
    receiver = Receiver(args.port)
    options = {"url": receiver.url + "/hook", "secret": SECRET, "max_concurrency": args.concurrency}
    try:
        for rnd in range(args.rounds):
            row: dict[str, Any] = {}
            order = ["bare", "bare_httpx", "relay"]
            for what in order if rnd % 2 == 0 else list(reversed(order)):
                receiver.get("/_reset")
                if what.startswith("bare"):
                    loop = bare_webhook if what == "bare" else bare_webhook_httpx
                    row[what] = loop(
                        receiver.url + "/hook", sample_events(args.events), args.concurrency
                    )
                else:
                    row["relay"] = relay_throughput(args, WEBHOOK, options)
                    stats = receiver.get("/_stats")
                    row["relay"]["received"] = stats["count"]
                    row["relay"]["unique"] = stats["unique"]
            row["ratio"] = row["relay"]["rate"] / row["bare"]["rate"]
            print(
                f"  webhook round {rnd + 1}: bare {row['bare']['rate']:8.0f}/s  "
                f"(httpx {row['bare_httpx']['rate']:6.0f}/s)  "
                f"relay {row['relay']['rate']:8.0f}/s  ratio {row['ratio']:.2f}  "
                f"(received {row['relay']['received']}, unique {row['relay']['unique']})"
            )
            rounds.append(row)
    finally:
        receiver.stop()


def broker_rounds(broker: Broker, args, rounds: list[dict[str, Any]]) -> None:
    """Each round: the bare loop at each of its windows, the publisher alone and the relay
    (the order reversed every other round), the broker drained after each; the relay
    against the faster bare loop."""
    steps = [f"raw{window}" for window in broker.windows] + ["alone", "relay"]
    for rnd in range(args.rounds):
        row: dict[str, Any] = {}
        for what in steps if rnd % 2 == 0 else list(reversed(steps)):
            if what == "relay":
                row[what] = relay_throughput(args, broker.publisher, broker.options)
            elif what == "alone":
                events = sample_events(args.events + 1)
                row[what] = publisher_alone(
                    broker.publisher, broker.options, events, args.batch_size
                )
            else:
                row[what] = broker.raw(sample_events(args.events), int(what[3:]))
            row[what][broker.held] = broker.drain()
        row["raw"] = max((row[f"raw{w}"] for w in broker.windows), key=lambda r: r["rate"])
        row["ratio"] = row["relay"]["rate"] / row["raw"]["rate"]
        raw = "  ".join(f"raw({w}) {row[f'raw{w}']['rate']:7.0f}/s" for w in broker.windows)
        print(
            f"  {broker.name} round {rnd + 1}: {raw}  "
            f"publisher alone {row['alone']['rate']:7.0f}/s  "
            f"relay {row['relay']['rate']:7.0f}/s  ratio {row['ratio']:.2f}"
        )
        rounds.append(row)


def rabbitmq_part(args, rounds: list[dict[str, Any]]) -> None:
    amqp_setup()
    try:
        broker_rounds(RABBITMQ_BROKER, args, rounds)
    finally:
        amqp_teardown()


def redis_part(args, rounds: list[dict[str, Any]]) -> None:
    redis_stream_length(delete=True)
    try:
        broker_rounds(REDIS_BROKER, args, rounds)
    finally:
        redis_stream_length(delete=True)


def batch_part(args, rounds: list[dict[str, Any]]) -> None:
    """One relay on each broker (where the relay's own cost shows) with batch sizes 100,
    500 and 1,000. Keys of a row: ``"<broker> <size>"``."""
    sizes = [100, 500, 1000]
    amqp_setup()
    try:
        for rnd in range(args.rounds):
            row: dict[str, Any] = {}
            for broker in (REDIS_BROKER, RABBITMQ_BROKER):
                for size in sizes if rnd % 2 == 0 else list(reversed(sizes)):
                    res = relay_throughput(
                        argparse.Namespace(**{**vars(args), "batch_size": size}),
                        broker.publisher,
                        broker.options,
                    )
                    res[broker.held] = broker.drain()
                    row[f"{broker.name} {size}"] = res
                    print(
                        f"  batch round {rnd + 1}: {broker.name:8s} batch size {size:5d} "
                        f"{res['rate']:8.0f}/s"
                    )
            rounds.append(row)
    finally:
        redis_stream_length(delete=True)
        amqp_teardown()


def scaling_part(args, rounds: list[dict[str, Any]]) -> None:
    receiver = Receiver(args.port)
    options = {"url": receiver.url + "/hook", "secret": SECRET, "max_concurrency": args.concurrency}
    counts = [int(n) for n in args.relays.split(",")]
    try:
        for rnd in range(args.rounds):
            row: dict[str, Any] = {}
            for k in counts if rnd % 2 == 0 else list(reversed(counts)):
                receiver.get("/_reset")
                res = relay_throughput(args, WEBHOOK, options, relays=k)
                stats = receiver.get("/_stats")
                res["received"], res["unique"] = stats["count"], stats["unique"]
                row[str(k)] = res
                print(
                    f"  scaling round {rnd + 1}: {k} relay(s) {res['rate']:8.0f}/s  "
                    f"received {res['received']} unique {res['unique']}"
                )
            rounds.append(row)
    finally:
        receiver.stop()


def latency_part(args, results: dict[str, Any]) -> None:

    receiver = Receiver(args.port + 1, record=True)
    options = {"url": receiver.url + "/hook", "secret": SECRET, "max_concurrency": args.concurrency}
    try:
        for mode in ("listen", "poll"):
            truncate_outbox()
            receiver.get("/_reset")
            procs = start_relays(
                1, WEBHOOK, options, batch_size=args.batch_size, listen=(mode == "listen")
            )
            try:
                committed = create_orders_at_rate(args)
                deadline = time.monotonic() + 30
                while receiver.get("/_stats")["count"] < args.latency_events:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.2)
            finally:
                stop_relays(procs)
            arrivals = receiver.get("/_arrivals")
            lat = sorted(
                (t - committed[subject]) * 1000
                for subject, _, t in arrivals
                if subject in committed
            )
            q = statistics.quantiles(lat, n=100, method="inclusive") if len(lat) > 2 else []
            results[mode] = {
                "events": len(lat),
                "p50_ms": statistics.median(lat),
                "p99_ms": q[98] if q else None,
                "max_ms": max(lat),
                "min_ms": min(lat),
            }
            print(
                f"  latency {mode}: {len(lat)} events  p50 {results[mode]['p50_ms']:.1f} ms  "
                f"p99 {results[mode]['p99_ms']:.1f} ms  max {results[mode]['max_ms']:.1f} ms"
            )
    finally:
        receiver.stop()


def steady_part(args, results: dict[str, Any]) -> None:
    """End to end, what ``claim_part`` measures per batch: one relay on Redis Streams
    drains a burst of ``--steady-events`` that lands on an outbox in its steady state
    (100,000 published events kept for retention, analysed while nothing was pending),
    with no ANALYZE after the burst. Compare with the ``redis`` part's relay rate."""
    truncate_outbox()
    insert_events(100_000, analyze=False, status="published")
    sql("ANALYZE django_orders_outbox_event")
    options = {"url": REDIS_URL, "stream": STREAM}
    procs = start_relays(1, REDIS, options, batch_size=args.batch_size)
    try:
        committed = insert_events(args.steady_events, analyze=False)
        deadline = time.monotonic() + 600
        while sql("SELECT count(*) FROM django_orders_outbox_event WHERE status = 'pending'")[0][0]:
            if time.monotonic() > deadline:
                raise RuntimeError("the steady-state burst was not drained in 10 minutes")
            time.sleep(0.5)
        (last,) = sql(
            "SELECT extract(epoch FROM max(published_at)) FROM django_orders_outbox_event"
        )[0]
    finally:
        stop_relays(procs)
        redis_stream_length(delete=True)
    seconds = float(last) - committed
    analyzed = sql(
        "SELECT last_autoanalyze FROM pg_stat_user_tables "
        "WHERE relname = 'django_orders_outbox_event'"
    )[0][0]
    results.update(
        {
            "events": args.steady_events,
            "seconds": round(seconds, 1),
            "rate": args.steady_events / seconds,
            "autoanalyze_ran": analyzed is not None,
        }
    )
    truncate_outbox()
    print(
        f"  steady-state burst: {args.steady_events} events in {seconds:.1f}s "
        f"({results['rate']:.0f}/s), autoanalyze ran: {analyzed is not None}"
    )


def claim_part(args, results: dict[str, Any]) -> None:
    """Claim + write-back time per batch of 100, in-process, for a burst of ``--events``
    pending events: (a) statistics that know the backlog (ANALYZE in the inserting
    transaction), (b) the steady state of a production outbox — 100,000 published events
    kept for retention, analysed while nothing was pending — then the same burst, before
    autovacuum has re-analysed the table."""
    from django_orders.outbox.postgres import PostgresClaimStore

    store = PostgresClaimStore("default")

    def per_batch(batches: int = 10) -> float:
        started = time.perf_counter()
        for _ in range(batches):
            claim = store.claim(args.batch_size)
            store.settle(claim.token, [e.id for e in claim.events], [])
        return (time.perf_counter() - started) / batches * 1000

    truncate_outbox()
    insert_events(args.events, analyze=True)
    results["fresh_stats_ms"] = per_batch()
    truncate_outbox()
    insert_events(100_000, analyze=False, status="published")
    sql("ANALYZE django_orders_outbox_event")
    insert_events(args.events, analyze=False)
    results["steady_state_burst_ms"] = per_batch(3)
    truncate_outbox()
    print(
        f"  claim+settle per batch: fresh statistics {results['fresh_stats_ms']:.1f} ms, "
        f"after a burst on an analysed history {results['steady_state_burst_ms']:.1f} ms"
    )


# -- report ------------------------------------------------------------------------------


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    s: dict[str, Any] = {}
    for part in ("webhook", "rabbitmq", "redis"):
        rows = results.get(part) or []
        if rows:
            s[part] = {
                "relay_rate": median([r["relay"]["rate"] for r in rows]),
                "reference_rate": median(
                    [r["raw" if part != "webhook" else "bare"]["rate"] for r in rows]
                ),
                "ratio": median([r["ratio"] for r in rows]),
            }
    if results.get("scaling"):
        s["scaling"] = {
            k: median([r[k]["rate"] for r in results["scaling"]])
            for k in sorted(results["scaling"][0], key=int)
        }
    if results.get("batch"):
        s["batch"] = {
            k: median([r[k]["rate"] for r in results["batch"]]) for k in results["batch"][0]
        }
    if results.get("webhook"):
        s["webhook"]["httpx_rate"] = median([r["bare_httpx"]["rate"] for r in results["webhook"]])
    for part, loops in (
        ("rabbitmq", ("raw100", "raw1000", "alone")),
        ("redis", ("raw1", "raw100", "alone")),
    ):
        if results.get(part):
            s[part]["loops"] = {
                loop: median([r[loop]["rate"] for r in results[part]]) for loop in loops
            }
            s[part]["ratio_each"] = {
                loop: median([r["relay"]["rate"] / r[loop]["rate"] for r in results[part]])
                for loop in loops
            }
    if results.get("latency"):
        s["latency"] = results["latency"]
    if results.get("claim"):
        s["claim"] = results["claim"]
    if results.get("steady"):
        s["steady"] = results["steady"]
    return s


def render_markdown(results: dict[str, Any]) -> str:
    m, s = results["machine"], results["summary"]
    lines = [
        run_header(m),
        "",
        "| publisher | relay events/s | bare loop events/s | relay / bare (median) |",
        "|---|---:|---:|---:|",
    ]
    for part in ("webhook", "rabbitmq", "redis"):
        if part in s:
            v = s[part]
            lines.append(
                f"| {part} | {fmt_int(v['relay_rate'])} | {fmt_int(v['reference_rate'])}"
                f" | {fmt_ratio(v['ratio'])} |"
            )
    if "scaling" in s:
        base = s["scaling"].get("1")
        lines += ["", "| relays | events/s | × one relay |", "|---:|---:|---:|"]
        for k, rate in s["scaling"].items():
            lines.append(
                f"| {k} | {fmt_int(rate)} | {rate / base:.2f} × |"
                if base
                else f"| {k} | {fmt_int(rate)} | |"
            )
    if "batch" in s:
        lines += ["", "| broker | batch size | events/s | × batch 100 |", "|---|---:|---:|---:|"]
        for k, rate in s["batch"].items():
            broker, size = k.split()
            base = s["batch"].get(f"{broker} 100")
            lines.append(
                f"| {broker} | {int(size):,} | {fmt_int(rate)} | "
                + (f"{rate / base:.2f} × |" if base else "|")
            )
    if "webhook" in s:
        lines += [
            "",
            f"Webhook bare loop with httpx instead of http.client: "
            f"{fmt_int(s['webhook']['httpx_rate'])} events/s.",
        ]
    names = {
        ("rabbitmq", "raw100"): "raw loop 100 unconfirmed at a time",
        ("rabbitmq", "raw1000"): "raw loop 1,000 unconfirmed at a time",
        ("redis", "raw1"): "raw loop one XADD per round trip",
        ("redis", "raw100"): "raw loop pipelined 100 at a time",
        ("rabbitmq", "alone"): "the package's publisher alone (no database)",
        ("redis", "alone"): "the package's publisher alone (no database)",
    }
    for part in ("rabbitmq", "redis"):
        if part in s:
            lines += [
                "",
                f"{part}: "
                + "; ".join(
                    f"{names.get((part, loop), loop)} {fmt_int(rate)}/s (relay / it "
                    f"{fmt_ratio(s[part]['ratio_each'][loop])})"
                    for loop, rate in s[part]["loops"].items()
                )
                + ".",
            ]
    if "latency" in s:
        lines += [
            "",
            "| wake-up | events | p50 ms | p99 ms | max ms |",
            "|---|---:|---:|---:|---:|",
        ]
        for mode, v in s["latency"].items():
            lines.append(
                f"| {mode} | {v['events']} | {v['p50_ms']:.1f} | {v['p99_ms']:.1f} | "
                f"{v['max_ms']:.1f} |"
            )
    if "claim" in s:
        c = s["claim"]
        lines += [
            "",
            "| claim + write-back of 100 events, backlog of "
            f"{results['args']['events']:,} | ms per batch |",
            "|---|---:|",
            f"| statistics know the backlog | {c['fresh_stats_ms']:.1f} |",
            f"| burst on an analysed history of 100,000 published events | "
            f"{c['steady_state_burst_ms']:.1f} |",
        ]
    if "steady" in s:
        v = s["steady"]
        lines += [
            "",
            f"Steady-state burst (Redis, one relay, no ANALYZE after the burst): "
            f"{v['events']:,} events in {v['seconds']} s = {fmt_int(v['rate'])} events/s "
            f"(autoanalyze ran meanwhile: {v['autoanalyze_ran']}).",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    args = parse_args()
    parts = args.only or PARTS
    results = start_run(args)
    for part in parts:
        print(f"{part}:")
        if part in ("latency", "claim", "steady"):
            results[part] = {}
            {"latency": latency_part, "claim": claim_part, "steady": steady_part}[part](
                args, results[part]
            )
        else:
            results[part] = []
            {
                "webhook": webhook_part,
                "rabbitmq": rabbitmq_part,
                "redis": redis_part,
                "batch": batch_part,
                "scaling": scaling_part,
            }[part](args, results[part])
    truncate_outbox()
    finish_run("relay", results, summarize, render_markdown)


if __name__ == "__main__":
    # Threads of the publishers must not keep a failed run alive.
    threading.excepthook = lambda a: print("thread error:", a.exc_value, file=sys.stderr)
    main()
