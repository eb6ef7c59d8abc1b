#!/usr/bin/env python
"""Where one relay's CPU goes, thread by thread, on the Kafka or NATS JetStream path.

    BENCH_DATABASE_URL=… .venv/bin/python bench/profile_relay.py --broker kafka --events 20000
    BENCH_DATABASE_URL=… .venv/bin/python bench/profile_relay.py --broker nats --profile

The relay runs in this process (``Relay.run(once=True)``, as ``orders_outbox_relay
--once`` would, pipelined, batch 100) on ``--events`` events inserted as
``bench/run_relay.py`` inserts them, against a broker of its own (tansu or nats-server, as
``bench/run_relay_brokers.py`` starts them). Reported: the CPU time per event of the
relay's own threads (main, claim, write-back: ``time.thread_time`` around their work) and
of the rest of the process (the client's threads — librdkafka's, the NATS event loop —
and the lease keeper), and the wall-clock events/s. With ``--profile``, each Python thread of the
relay is profiled by ``cProfile`` timed by that thread's own CPU clock
(``time.thread_time``: waiting costs nothing) and the top functions by own time are
printed per thread. A deterministic profiler inflates small, often-called functions:
read shares, not absolute times; the CPU table is measured without ``--profile``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import pstats
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import ensure_database, setup_django


class Profiles:
    """One ``cProfile`` per Python thread, enabled around the work it does."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.by_thread: dict[str, cProfile.Profile] = {}
        #: CPU seconds of each thread's work (``time.thread_time``), profiled or not.
        self.cpu: dict[str, float] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _name() -> str:
        return threading.current_thread().name.rsplit("_", 1)[0]

    def _profile(self) -> cProfile.Profile:
        name = self._name()
        with self._lock:
            if name not in self.by_thread:
                self.by_thread[name] = cProfile.Profile(timer=time.thread_time)
            return self.by_thread[name]

    @contextlib.contextmanager
    def on(self) -> Iterator[None]:
        started = time.thread_time()
        profile = self._profile() if self.enabled else None
        if profile is not None:
            profile.enable()
        try:
            yield
        finally:
            if profile is not None:
                profile.disable()
            name = self._name()
            with self._lock:
                self.cpu[name] = self.cpu.get(name, 0.0) + time.thread_time() - started

    def report(self, events: int, top: int) -> None:
        for name, profile in self.by_thread.items():
            stats = pstats.Stats(profile)
            total = stats.total_tt  # type: ignore[attr-defined]
            print(f"\n=== thread {name}: {total / events * 1e6:.1f} µs/event profiled ===")
            stats.sort_stats("tottime").print_stats(top)


def start_broker(broker: str) -> Any:
    """A broker of the benchmark's own: tansu or nats-server, as
    ``bench/run_relay_brokers.py`` starts them; ``stop()`` ends it."""
    import run_relay_brokers

    return run_relay_brokers.Tansu() if broker == "kafka" else run_relay_brokers.NatsServer()


def started_publisher(server: Any, kafka_config: dict[str, Any] | None = None) -> Any:
    """The package's publisher on ``server`` (Kafka: a new topic; NATS: the stream made
    anew), its client started (the producer id fetched; connected)."""
    import run_relay
    import run_relay_brokers

    publisher: Any
    if isinstance(server, run_relay_brokers.Tansu):
        from django_orders.publishers.kafka import KafkaPublisher

        publisher = KafkaPublisher(
            bootstrap_servers=server.bootstrap, topic=server.new_topic(3), config=kafka_config
        )
    else:
        from django_orders.publishers.nats_jetstream import NatsJetStreamPublisher

        server.reset_stream()
        publisher = NatsJetStreamPublisher(servers=server.url, subject="bench.orders.{type}")
    publisher.start_batch(run_relay.sample_events(1)).wait()
    return publisher


def relay_once(
    publisher: Any,
    events: int,
    batch_size: int,
    around: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
) -> dict[str, Any]:
    """``events`` events inserted as ``bench/run_relay.py`` inserts them, then one relay
    in this process, ``Relay.run(once=True)`` (pipelined), inside ``around()``. Returns
    the relay, the wall-clock seconds and this process's CPU seconds of the run."""
    import run_relay

    from django_orders.outbox.relay import Relay

    run_relay.truncate_outbox()
    run_relay.insert_events(events)
    relay = Relay(publisher, batch_size=batch_size, listen=False)
    process_before = time.process_time()
    started = time.perf_counter()
    with around():
        relay.run(once=True)
    seconds = time.perf_counter() - started
    return {"relay": relay, "seconds": seconds,
            "process_cpu": time.process_time() - process_before}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--broker", choices=["kafka", "nats"], default="kafka")
    p.add_argument("--events", type=int, default=20_000)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--profile", action="store_true", help="cProfile each Python thread")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--kafka-config", default="{}", help="librdkafka properties, as JSON")
    p.add_argument(
        "--switch-interval", type=float, help="sys.setswitchinterval() for the run, seconds"
    )
    args = p.parse_args()
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)
    ensure_database()
    setup_django()

    from django_orders.outbox import strategies

    profiles = Profiles(args.profile)
    run_job = strategies._DatabaseThread._run

    def profiled_run(self: Any, job: Any, *a: Any) -> Any:
        with profiles.on():
            return run_job(self, job, *a)

    strategies._DatabaseThread._run = profiled_run  # type: ignore[method-assign]

    broker = start_broker(args.broker)
    publisher = started_publisher(broker, json.loads(args.kafka_config))
    if args.profile and args.broker == "nats":  # the event loop's thread too, until closed
        loop, close = publisher._loop, publisher.close

        async def stop_profile() -> None:
            profiles._profile().disable()

        def close_profiled() -> None:
            asyncio.run_coroutine_threadsafe(stop_profile(), loop).result(5)
            close()

        loop.call_soon_threadsafe(lambda: profiles._profile().enable())
        publisher.close = close_profiled
    try:
        run = relay_once(publisher, args.events, args.batch_size, profiles.on)
    finally:
        broker.stop()
    relay, seconds, process = run["relay"], run["seconds"], run["process_cpu"]
    print(
        f"{args.broker}: {relay.totals.published} published in {seconds:.2f} s: "
        f"{args.events / seconds:,.0f} events/s (batch {args.batch_size})"
    )
    rows = dict(profiles.cpu)
    rows["other threads (client, lease keeper)"] = process - sum(rows.values())
    for name, used in rows.items():
        print(f"  {name:40s} {used / args.events * 1e6:7.1f} µs CPU/event")
    print(f"  {'the process':40s} {process / args.events * 1e6:7.1f} µs CPU/event")
    profiles.report(args.events, args.top)


if __name__ == "__main__":
    main()
