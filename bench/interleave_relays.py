#!/usr/bin/env python
"""One relay's throughput under several configurations, interleaved round by round.

    .venv/bin/python bench/interleave_relays.py \\
        --side main=<checkout of main>:<python without extras> \\
        --side branch=.:<python without extras> \\
        --side observed=.:.venv/bin/python:observe \\
        --rounds 4 --events 20000

A *side* is a checkout (its ``django_orders`` is what the relay processes import), the
Python that runs them (its installed packages: with or without OpenTelemetry and
prometheus-client) and, with ``:observe``, ``bench/run_relay.py --observe`` (traced
events, a tracing SDK, ``--metrics-port``). Each round runs every side once per publisher
(webhook, RabbitMQ, Redis), the order reversed every other round, so the load of a shared
machine falls on all sides alike; ratios are taken within a round, medians reported.
Throughput as in ``bench/run_relay.py``: N events inserted in one transaction, one relay
woken by its NOTIFY, N / (last ``published_at`` − commit). Also the relay process's CPU
time per event (user + system of all its threads, ``/proc/<pid>/stat``) from just before
the insert to the last event published — its start-up left out: far less sensitive to the
machine's load than the rate.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import harness
import run_relay


def parse_side(text: str) -> tuple[str, Path, str, bool]:
    name, _, rest = text.partition("=")
    checkout, python, *flags = rest.split(":")
    return name, Path(checkout).resolve(), python, "observe" in flags


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def relay_run(
    args: argparse.Namespace, publisher: str, options: dict, observe: bool
) -> tuple[float, float]:
    """One relay drains ``args.events`` events: (events/s, µs of its CPU per event)."""
    run_relay.truncate_outbox()
    (proc,) = run_relay.start_relays(1, publisher, options, batch_size=100, observe=observe)
    try:
        cpu_before = cpu_seconds(proc.pid)
        committed = run_relay.insert_events(args.events, traced=observe)
        last = run_relay.wait_published(args.events, timeout=max(120, args.events / 100))
        cpu_after = cpu_seconds(proc.pid)
    finally:
        run_relay.stop_relays([proc])
    return args.events / (last - committed), (cpu_after - cpu_before) / args.events * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--side", action="append", required=True, type=parse_side)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--events", type=int, default=20_000)
    p.add_argument("--port", type=int, default=8097)
    p.add_argument("--only", action="append", choices=["webhook", "rabbitmq", "redis"])
    args = p.parse_args()
    sides = {name: (checkout, python, observe) for name, checkout, python, observe in args.side}
    harness.ensure_database()
    harness.setup_django()
    receiver = run_relay.Receiver(args.port)
    run_relay.amqp_setup()
    publishers = {
        "webhook": (
            run_relay.WEBHOOK,
            {"url": receiver.url + "/hook", "secret": run_relay.SECRET, "max_concurrency": 16},
        ),
        "rabbitmq": (
            run_relay.RABBITMQ,
            {"url": run_relay.AMQP_URL, "exchange": run_relay.EXCHANGE},
        ),
        "redis": (run_relay.REDIS, {"url": run_relay.REDIS_URL, "stream": run_relay.STREAM}),
    }
    publishers = {name: v for name, v in publishers.items() if name in (args.only or publishers)}
    rates: dict[str, dict[str, list[float]]] = {name: {s: [] for s in sides} for name in publishers}
    cpu: dict[str, dict[str, list[float]]] = {name: {s: [] for s in sides} for name in publishers}
    try:
        for rnd in range(args.rounds):
            for name, (publisher, options) in publishers.items():
                order = list(sides) if rnd % 2 == 0 else list(reversed(sides))
                for side in order:
                    checkout, python, observe = sides[side]
                    # What start_relays() reads: where the relay's code is, which Python.
                    harness.REPO_DIR = run_relay.REPO_DIR = checkout
                    sys.executable = python
                    receiver.get("/_reset")
                    rate, cpu_per_event = relay_run(args, publisher, options, observe)
                    run_relay.amqp_setup(purge_only=True)
                    run_relay.redis_stream_length(delete=True)
                    rates[name][side].append(rate)
                    cpu[name][side].append(cpu_per_event)
                    print(
                        f"round {rnd + 1} {name:8s} {side:10s} {rate:8.0f}/s "
                        f"{cpu[name][side][-1]:6.1f} µs CPU/event",
                        flush=True,
                    )
    finally:
        receiver.stop()
        run_relay.amqp_teardown()
        run_relay.truncate_outbox()
    first = next(iter(sides))
    for name, per_side in rates.items():
        medians = ", ".join(
            f"{s} {statistics.median(v):,.0f}/s, {statistics.median(cpu[name][s]):.1f} µs CPU"
            for s, v in per_side.items()
        )
        print(f"{name}: {medians} per event (medians)")
        for side, values in per_side.items():
            if side == first:
                continue
            ratios = [b / a for a, b in zip(per_side[first], values, strict=True)]
            print(
                f"  {side} / {first}: median {statistics.median(ratios):.2f} × "
                f"(rounds {', '.join(f'{r:.2f}' for r in ratios)})"
            )


if __name__ == "__main__":
    main()
