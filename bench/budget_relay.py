#!/usr/bin/env python
"""The CPU an event costs each party on this machine, relay and bare loop, Kafka and NATS
JetStream (issue 14; docs/benchmarks.md, "The budget on this machine").

    BENCH_DATABASE_URL=… .venv/bin/python bench/budget_relay.py               # ~2 minutes
    BENCH_DATABASE_URL=… .venv/bin/python bench/budget_relay.py --broker nats --rounds 1

CPU time (user + system, every thread) from ``/proc/<pid>/stat`` before and after each
run, per event, in one sitting:

- **bare loops** (``bench/run_relay_brokers.py``'s): this process (the client) and the
  broker process (tansu; nats-server);
- **relay**: one relay in this process, pipelined, as ``bench/profile_relay.py`` runs it
  (this process), the PostgreSQL backends of its connections (their pids from
  ``pg_backend_pid()`` when each connects), the broker; beside them PostgreSQL's background
  processes (walwriter, checkpointer, …: shared with every other user of the server);
- **PostgreSQL alone**: ``pgbench``, one client, the relay's claim and write-back of
  ``--batch-size`` events on as many pending events — the statements as the relay's
  driver sends them (rendered by its ``mogrify`` from ``PostgresClaimStore.claim_sql`` and
  ``outbox_statements().published``); the claim's rows aggregated on the server (their
  text made, ``row::text``, instead of sent) so that pgbench can hand their ids to the
  write-back (``\\gset``) — the CPU of that one backend.

Then the bound: 2 cores / the relay path's CPU per event, against the bare loop's events/s.
The broker and each client stay up across ``--rounds`` rounds (alternating bare loop and
relay first); medians are reported. Results: bench/results/budget-<stamp>.json, -latest.*.
"""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import arg_parser, database_url, finish_run, median, process_cpu, run_header, start_run

#: The cores of this machine that every party shares.
CORES = 2


class Backends:
    """The PostgreSQL backends of this process's connections and their CPU seconds, each
    read last while it was alive (Django's ``connection_created`` gives the pid; the
    relay's threads close theirs when it stops, and are read just before)."""

    def __init__(self) -> None:
        from django.db.backends.signals import connection_created

        from django_orders.outbox import strategies

        self.seen: dict[int, float] = {}
        connection_created.connect(self._created, weak=False)
        close = strategies._DatabaseThread._close_connection

        def read_then_close(thread: Any) -> None:
            self.total()
            close(thread)

        strategies._DatabaseThread._close_connection = read_then_close  # type: ignore[method-assign]

    def _created(self, sender: Any, connection: Any, **kwargs: Any) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            self.seen[cursor.fetchone()[0]] = 0.0
        self.total()

    def total(self) -> float:
        for pid in self.seen:
            cpu = process_cpu(pid)
            if cpu is not None:
                self.seen[pid] = cpu
        return sum(self.seen.values())


def background_pids() -> list[int]:
    """PostgreSQL's processes that serve no client (walwriter, checkpointer, …)."""
    from run_relay import sql

    return [pid for (pid,) in sql(
        "SELECT pid FROM pg_stat_activity WHERE backend_type <> 'client backend'"
    )]  # fmt: skip


def summed(pids: list[int]) -> Callable[[], float]:
    return lambda: sum(process_cpu(pid) or 0.0 for pid in pids)


@contextlib.contextmanager
def measured(parties: dict[str, Callable[[], float]], into: dict[str, float]) -> Iterator[None]:
    """CPU seconds of each party (a function returning its CPU so far) over the block."""
    before = {name: read() for name, read in parties.items()}
    yield
    into.update({name: read() - before[name] for name, read in parties.items()})


def per_event(cpu: dict[str, float], events: int) -> dict[str, float]:
    return {name: seconds / events * 1e6 for name, seconds in cpu.items()}


# -- the parts -------------------------------------------------------------------------------


def broker_part(args: Any, name: str, backends: Backends) -> list[dict[str, Any]]:
    """Rounds of the bare loops and the relay on one broker."""
    import profile_relay
    import run_relay
    import run_relay_brokers as brokers

    server = profile_relay.start_broker(name)
    parties = {
        "client": time.process_time,
        "broker": lambda: process_cpu(server.proc.pid) or 0.0,
        "postgres": backends.total,
        "postgres background (shared)": summed(background_pids()),
    }
    # Each bare loop: (made ready outside the measurement, run on what that returned).
    bare: dict[str, tuple[Callable[[], Any], Callable[[list[dict[str, Any]], Any], Any]]]
    if name == "kafka":
        topic = lambda: server.new_topic(3)  # noqa: E731
        bare = {
            "bare loop": (topic, lambda events, t: brokers.bare_kafka(server.bootstrap, t, events)),
            "bare loop, flush per batch": (topic, lambda events, t: brokers.bare_kafka(
                server.bootstrap, t, events, args.batch_size)),
            # The producer started first (one record out of the time), as the relay's is.
            "bare loop, started first": (topic, lambda events, t: brokers.bare_kafka(
                server.bootstrap, t, events, warm=True)),
        }  # fmt: skip
    else:
        bare = {
            f"bare loop, {call}": (server.reset_stream, lambda events, _, a=call != "js.publish": (
                brokers.bare_nats(server.url, events, args.batch_size, publish_async=a)))
            for call in ("js.publish", "publish_async")
        }  # fmt: skip
    rounds = []
    try:
        for rnd in range(args.rounds):
            row: dict[str, Any] = {}
            order = [*bare, "relay"]
            if rnd % 2:
                order.reverse()
            for what in order:
                cpu: dict[str, float] = {}
                if what == "relay":
                    publisher = profile_relay.started_publisher(server)  # the relay closes it
                    run = profile_relay.relay_once(
                        publisher,
                        args.events,
                        args.batch_size,
                        functools.partial(measured, parties, cpu),
                    )
                    rate = args.events / run["seconds"]
                    published = run["relay"].totals.published
                else:
                    events = run_relay.sample_events(args.events)
                    prepare, loop = bare[what]
                    target = prepare()
                    with measured(parties, cpu):
                        result = loop(events, target)
                    rate, published = result["rate"], args.events - result.get("failed", 0)
                row[what] = {"rate": rate, "published": published,
                             "us_per_event": per_event(cpu, args.events)}  # fmt: skip
                print(f"  {name} round {rnd + 1}, {what}: {rate:,.0f}/s, "
                      + ", ".join(f"{k} {v:.1f}" for k, v in row[what]["us_per_event"].items())
                      + " µs/event")  # fmt: skip
            rounds.append(row)
    finally:
        server.stop()
    return rounds


PGBENCH_SCRIPT = """\
\\if :started = 0
\\sleep 1 s
\\set started 1
\\endif
{claim} \\gset
\\if :claimed = 0
\\sleep 1 s
\\else
{published};
\\endif
"""


def pgbench_script(batch_size: int) -> str:
    """The relay's claim and write-back, as its driver renders them, for pgbench: a
    constant lease token (one client: the ids fence each write-back), the claimed rows'
    ids handed over as ``:ids``. The first transaction and the last (an empty claim)
    sleep a second, the time to read the backend's CPU before and after."""
    from django.db import connection

    from django_orders.outbox.claims import PUBLISHED
    from django_orders.outbox.postgres import PostgresClaimStore
    from django_orders.sql import outbox_statements

    token, ids = uuid.UUID(int=1), "IDS-FROM-THE-CLAIM"
    claim, params = PostgresClaimStore("default").claim_sql(token, batch_size)
    with connection.cursor() as cursor:
        claim = cursor.cursor.mogrify(claim, params)
        published = cursor.cursor.mogrify(
            outbox_statements(connection).published, [PUBLISHED, "2026-12-07T10:00:00Z", ids,
                                                      str(token)]
        )  # fmt: skip
    with_, final_select = claim.rstrip().rsplit("\n    SELECT ", 1)
    claim = (
        f"{with_},\n    rows AS (SELECT {final_select})\n"
        "    SELECT count(*) AS claimed, '{' || string_agg(rows.id, ',') || '}' AS ids, "
        "sum(length(rows::text)) AS bytes FROM rows"
    )
    return PGBENCH_SCRIPT.format(claim=claim, published=published.strip().replace(ids, ":ids"))


def pgbench_part(args: Any) -> dict[str, Any]:
    """PostgreSQL alone: the CPU of pgbench's backend over ``--events`` claims and
    write-backs."""
    import run_relay

    run_relay.truncate_outbox()
    run_relay.insert_events(args.events)
    name = f"budget-{os.getpid()}"
    background = summed(background_pids())
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as script:
        script.write(pgbench_script(args.batch_size))
    transactions = -(-args.events // args.batch_size) + 1  # and the empty claim
    cmd = ["pgbench", "-n", "-M", "simple", "-c", "1", "-r", "-D", "started=0",
           "-t", str(transactions), "-f", script.name, database_url()]  # fmt: skip
    background_before = background()
    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd, env={**os.environ, "PGAPPNAME": name}, stdout=subprocess.PIPE, text=True
    )
    readings: list[float] = []
    pid = None
    while proc.poll() is None:
        if pid is None:
            rows = run_relay.sql(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s", [name]
            )
            pid = rows[0][0] if rows else None
        if pid is not None and (cpu := process_cpu(pid)) is not None:
            readings.append(cpu)
        time.sleep(0.05)
    out = proc.communicate()[0]
    seconds = time.perf_counter() - started - 2  # the two sleeps
    os.unlink(script.name)
    if proc.returncode or len(readings) < 2:
        raise RuntimeError(f"pgbench failed ({proc.returncode}):\n{out}")
    published = run_relay.outbox_counts().get("published", 0)
    run_relay.truncate_outbox()
    # pgbench -r: "<latency ms> <failures> <the command's first line>" per command.
    latencies = {
        "claim" if command.startswith("WITH") else "write-back": float(ms)
        for ms, _, command in (line.split(None, 2) for line in out.splitlines() if "  " in line)
        if command.startswith(("WITH", "UPDATE"))
    }
    cpu = {"postgres": readings[-1] - readings[0], "postgres background (shared)":
           background() - background_before}  # fmt: skip
    print(f"  pgbench: {published} published, {per_event(cpu, args.events)} µs/event")
    return {"published": published, "seconds": seconds,
            "us_per_event": per_event(cpu, args.events), "latencies_ms": latencies}  # fmt: skip


# -- the report ---------------------------------------------------------------------------------


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for name in ("kafka", "nats"):
        rounds = results.get(name)
        if not rounds:
            continue
        summary[name] = {
            what: {
                "rate": median([r[what]["rate"] for r in rounds]),
                "us_per_event": {
                    party: median([r[what]["us_per_event"][party] for r in rounds])
                    for party in rounds[0][what]["us_per_event"]
                },
            }
            for what in rounds[0]
        }
        relay = summary[name]["relay"]["us_per_event"]
        path = relay["client"] + relay["postgres"] + relay["broker"]
        summary[name]["relay"]["path_us"] = path
        summary[name]["relay"]["bound"] = CORES / path * 1e6
    if "pgbench" in results:
        summary["pgbench"] = results["pgbench"]["us_per_event"]
    return summary


def render_markdown(results: dict[str, Any]) -> str:
    lines = [run_header(results["machine"]), ""]
    parties = ["client", "postgres", "broker", "postgres background (shared)"]
    lines += ["| broker, run | events/s | " + " | ".join(
        "relay process" if p == "client" else p for p in parties
    ) + " | client + postgres + broker | 2 cores / that, events/s | relay bound / these events/s |",
              "|---" * (len(parties) + 5) + "|"]  # fmt: skip
    for name in ("kafka", "nats"):
        s = results["summary"].get(name)
        if not s:
            continue
        bound = s["relay"]["bound"]
        for what, figures in s.items():
            us = figures["us_per_event"]
            path = us["client"] + us["postgres"] + us["broker"]
            cells = " | ".join(f"{us[p]:.1f}" for p in parties)
            lines.append(
                f"| {name}, {what} | {figures['rate']:,.0f} | {cells} | {path:.1f} | "
                f"{CORES / path * 1e6:,.0f} | {bound / figures['rate']:.2f} |"
            )
    if "pgbench" in results["summary"]:
        pg = results["summary"]["pgbench"]
        walls = results["pgbench"]["latencies_ms"].items()
        lines += ["", f"PostgreSQL alone (pgbench, claim + write-back, batch "
                  f"{results['args']['batch_size']}): {pg['postgres']:.1f} µs/event in the "
                  f"backend, {pg['postgres background (shared)']:.1f} µs/event background; "
                  "per batch, wall clock: "
                  + ", ".join(f"{k} {v:.2f} ms" for k, v in walls)]  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    p = arg_parser(__doc__)
    p.set_defaults(rounds=2)
    p.add_argument("--broker", action="append", choices=["kafka", "nats"],
                   help="repeatable [kafka and nats]")  # fmt: skip
    p.add_argument("--events", type=int, default=20_000)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--no-pgbench", action="store_true", help="skip PostgreSQL alone")
    args = p.parse_args()
    results = start_run(args)
    backends = Backends()
    for name in args.broker or ["kafka", "nats"]:
        print(f"{name}:")
        results[name] = broker_part(args, name, backends)
    if not args.no_pgbench:
        results["pgbench"] = pgbench_part(args)
    finish_run("budget", results, summarize, render_markdown)


if __name__ == "__main__":
    main()
