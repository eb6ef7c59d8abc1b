"""Cost flat with volume (issue 13, point 2): does the package slow down with millions of
published events retained and millions of orders?

Two databases side by side, migrated alike: ``<name>_empty`` (nothing in it) and
``<name>_volume`` (``--orders`` orders over 100 tenants and ``--events`` published events,
all older than ``OUTBOX_RETENTION``, seeded with ``INSERT … SELECT generate_series``).
Each round measures both, in alternating order:

- **create**: a gunicorn server per database (the API benchmark's settings), ``wrk`` with
  a new ``Idempotency-Key`` per request: req/s, p99, gunicorn CPU per request;
- **relay**: a relay process per database (webhook publisher to ``bench/receiver.py``),
  a burst of ``--relay-events`` pending events committed with their ``NOTIFY``: events/s
  from the commit to the last ``published_at``.

Then, on the volume database only:

- **purge**: ``orders_purge`` deletes the seeded events in batches while creates run;
  windows of ``--purge-window`` seconds with the purge paused (``SIGSTOP``) and running
  alternate, and ``pg_stat_activity`` is sampled every 50 ms for backends of the
  database waiting on a lock;
- **rss** (on the empty one): one relay publishes ``--rss-events`` events, fed in chunks of
  ``--rss-chunk``; its resident set size after each chunk.

    .venv/bin/python bench/run_volume.py                       # the issue's sizes
    .venv/bin/python bench/run_volume.py --orders 20000 --events 50000 --rss-events 20000 \\
        --rounds 1 --duration 3 --purge-window 3             # smoke run
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import seed
from harness import (
    REPO_DIR,
    RESULTS_DIR,
    GunicornServer,
    api_arg_parser,
    database_url,
    django_env,
    machine,
    measure_wrk,
    median,
    save_results,
    stop_process,
)
from run_relay import SECRET, WEBHOOK, Receiver, start_relays, stop_relays

RELAY_TENANT = "bench-relay"

EVENTS_SQL = """
INSERT INTO django_orders_outbox_event
    (id, tenant_id, aggregate_type, aggregate_id, aggregate_version, type, payload,
     created_at, status, attempts, available_at, lease_token, leased_until, last_error,
     published_at, extensions)
SELECT gen_random_uuid(), tenant, 'order', oid, 1, 'order.created',
       jsonb_build_object(
           'id', oid::text, 'tenantId', tenant, 'status', 'draft', 'version', 1,
           'totalCents', 1234, 'currency', 'EUR',
           'metadata', jsonb_build_object('source', 'bench'),
           'createdAt', to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
           'updatedAt', to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
           'confirmedAt', NULL, 'closedAt', NULL),
       ts, %(status)s::text, %(attempts)s, ts, NULL, NULL, '',
       CASE WHEN %(status)s::text = 'published' THEN ts END, '{{}}'::jsonb
FROM (SELECT gen_random_uuid() AS oid, {tenant} AS tenant, {ts} AS ts
      FROM generate_series(%(start)s::bigint, %(stop)s::bigint) AS g) AS s
"""


def parse_args() -> argparse.Namespace:
    p = api_arg_parser(__doc__, port=8095, port_help="empty's server; volume's is +1")
    p.add_argument("--orders", type=int, default=2_000_000)
    p.add_argument("--events", type=int, default=5_000_000, help="published events retained")
    p.add_argument("--relay-events", type=int, default=20_000)
    p.add_argument("--purge-window", type=float, default=15)
    p.add_argument("--purge-batch", type=int, default=1000)
    p.add_argument(
        "--purge-pause", default="auto", help="orders_purge --pause: auto (its default) or seconds"
    )
    p.add_argument("--rss-events", type=int, default=1_000_000)
    p.add_argument("--rss-chunk", type=int, default=50_000)
    p.add_argument("--receiver-port", type=int, default=8097)
    p.add_argument("--reuse-seed", action="store_true", help="keep a volume database seeded alike")
    p.add_argument(
        "--only", action="append", choices=("create", "relay", "purge", "rss"), default=None
    )
    return p.parse_args()


class Db:
    """One of the two databases, reached directly (autocommit)."""

    def __init__(self, name: str, url: str) -> None:
        self.name, self.url = name, url
        self.conn: psycopg.Connection | None = None

    def connect(self) -> psycopg.Connection:
        if self.conn is None or self.conn.closed:
            self.conn = psycopg.connect(self.url, autocommit=True)
        return self.conn

    def sql(self, statement: str, params: Any = None) -> list[tuple]:
        with self.connect().cursor() as cursor:
            cursor.execute(statement, params)
            return cursor.fetchall() if cursor.description else []

    def ensure(self) -> None:
        admin = self.url.rsplit("/", 1)[0] + "/postgres"
        dbname = self.url.rsplit("/", 1)[1]
        with psycopg.connect(admin, autocommit=True) as conn:
            if not conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [dbname]
            ).fetchone():
                conn.execute(f'CREATE DATABASE "{dbname}"')
        subprocess.run(
            [sys.executable, "-m", "django", "migrate", "--verbosity", "0"],
            env=django_env(BENCH_DATABASE_URL=self.url),
            check=True,
            cwd=REPO_DIR,
        )

    def insert_events(self, start: int, stop: int, *, tenant: str, ts: str, status: str) -> None:
        self.sql(
            EVENTS_SQL.format(tenant=tenant, ts=ts),
            {
                "status": status,
                "attempts": 1 if status == "published" else 0,
                "start": start,
                "stop": stop,
            },
        )

    def burst(self, count: int) -> float:
        """``count`` pending events of one tenant, committed with ANALYZE and NOTIFY (as
        bench/run_relay.py does); the wall-clock time of the commit."""
        with self.connect().transaction():
            self.insert_events(
                1,
                count,
                tenant=f"'{RELAY_TENANT}'",
                ts="clock_timestamp() + g * interval '1 microsecond'",
                status="pending",
            )
            self.sql("ANALYZE django_orders_outbox_event")
            self.sql("NOTIFY django_orders_outbox")
        return time.time()

    def wait_published(self, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while True:
            (left,) = self.sql(
                "SELECT count(*) FROM django_orders_outbox_event "
                "WHERE tenant_id = %s AND status <> 'published'",
                [RELAY_TENANT],
            )[0]
            if left == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: {left} events unpublished after {timeout}s")
            time.sleep(0.25)
        (last,) = self.sql(
            "SELECT extract(epoch FROM max(published_at)) FROM django_orders_outbox_event "
            "WHERE tenant_id = %s",
            [RELAY_TENANT],
        )[0]
        return float(last)

    def settle_creates(self) -> None:
        """Mark the events the creates recorded as published: no relay ran meanwhile, and
        the relay measurement must publish its own burst only."""
        self.sql(
            "UPDATE django_orders_outbox_event SET status = 'published', published_at = now() "
            "WHERE status = 'pending' AND tenant_id <> %s",
            [RELAY_TENANT],
        )

    def forget_burst(self) -> None:
        self.sql("DELETE FROM django_orders_outbox_event WHERE tenant_id = %s", [RELAY_TENANT])

    def counts(self) -> dict[str, int]:
        rows = self.sql(
            "SELECT relname, n_live_tup FROM pg_stat_user_tables WHERE relname IN "
            "('django_orders_order', 'django_orders_outbox_event')"
        )
        return {name: int(n) for name, n in rows}


def seed_volume(db: Db, args: argparse.Namespace) -> None:
    os.environ["BENCH_DATABASE_URL"] = db.url
    seed.truncate()
    t0 = time.monotonic()
    # 2M orders over 100 tenants, 1.7 ms apart (seed.insert_orders, as the API benchmark).
    seed.insert_orders("'bench-vol-' || (g % 100)", args.orders, step_us=1700, statuses=True)
    print(f"  {args.orders} orders in {time.monotonic() - t0:.0f}s")
    # The events: published, 8 to ~9 days old (past the 7 days' retention), 100 tenants.
    chunk = 500_000
    for start in range(1, args.events + 1, chunk):
        stop = min(start + chunk - 1, args.events)
        db.insert_events(
            start,
            stop,
            tenant="'bench-vol-' || (g %% 100)",  # %% for the driver's placeholders
            ts="now() - interval '8 days' - g * interval '10 milliseconds'",
            status="published",
        )
        print(f"  events {stop} ({time.monotonic() - t0:.0f}s)")
    db.sql("VACUUM ANALYZE")
    print(f"  seeded in {time.monotonic() - t0:.0f}s: {db.counts()}")


def start_server(db: Db, args: argparse.Namespace, port: int) -> GunicornServer:
    os.environ["BENCH_DATABASE_URL"] = db.url
    server = GunicornServer(args, port=port)
    server.start()
    return server


def wrk_create(
    server: GunicornServer, args: argparse.Namespace, prefix: str, duration: float
) -> dict:
    return measure_wrk(
        server,
        "create.lua",
        args,
        duration=duration,
        env={
            "BENCH_PATH": "/orders",
            "BENCH_TENANT": seed.CREATE_TENANT,
            "BENCH_KEY_PREFIX": prefix,
        },
    )


def relay_rate(db: Db, args: argparse.Namespace, options: dict[str, Any]) -> dict[str, Any]:
    os.environ["BENCH_DATABASE_URL"] = db.url
    db.forget_burst()
    procs = start_relays(1, WEBHOOK, options, batch_size=100)
    try:
        committed = db.burst(args.relay_events)
        last = db.wait_published(timeout=max(120, args.relay_events / 100))
    finally:
        stop_relays(procs)
    db.forget_burst()
    seconds = last - committed
    return {"events": args.relay_events, "seconds": seconds, "rate": args.relay_events / seconds}


class LockWaits:
    """Samples, every 50 ms, the backends of a database waiting on a lock."""

    def __init__(self, db: Db) -> None:
        self.url, self.dbname = db.url, db.url.rsplit("/", 1)[1]
        self.samples = self.waiting = self.behind_delete = 0
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self._stop.is_set():
                # Every backend waiting on a lock, and what its blockers are running: a
                # create waiting behind the purge would show a DELETE among them. (Creates
                # also wait on each other's NOTIFY at commit, a lock on "object" 0 that
                # every run has, purge or not: counted apart.)
                rows = conn.execute(
                    "SELECT a.wait_event, left(a.query, 50), "
                    "       coalesce((SELECT string_agg(left(b.query, 50), ' | ') "
                    "                 FROM pg_stat_activity b "
                    "                 WHERE b.pid = ANY(pg_blocking_pids(a.pid))), '') "
                    "FROM pg_stat_activity a "
                    "WHERE a.datname = %s AND a.wait_event_type = 'Lock' "
                    "AND a.pid <> pg_backend_pid()",
                    [self.dbname],
                ).fetchall()
                self.samples += 1
                if rows:
                    self.waiting += 1
                    self.seen.update(f"{event}: {query} <- {by}" for event, query, by in rows)
                if any("DELETE" in by for _, _, by in rows):
                    self.behind_delete += 1
                time.sleep(0.05)

    def __enter__(self) -> LockWaits:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def purge_part(db: Db, server: GunicornServer, args: argparse.Namespace, results: dict) -> None:
    deleted_before = db.sql(
        "SELECT n_tup_del FROM pg_stat_user_tables WHERE relname = 'django_orders_outbox_event'"
    )[0][0]
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "django", "orders_purge"),
            *("--batch-size", str(args.purge_batch), "--pause", str(args.purge_pause)),
        ],
        env=django_env(BENCH_DATABASE_URL=db.url),
        cwd=REPO_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    rows = []
    try:
        time.sleep(3)  # Django starting up; the first batches
        for rnd in range(args.rounds):
            row: dict[str, Any] = {}
            for phase in ("paused", "running"):
                os.kill(proc.pid, signal.SIGSTOP if phase == "paused" else signal.SIGCONT)
                if proc.poll() is not None:
                    raise RuntimeError("the purge ended before the measurement did")
                with LockWaits(db) as waits:
                    res = wrk_create(server, args, f"purge-{time.time()}", args.purge_window)
                res["lock_wait_samples"] = waits.waiting
                res["behind_delete_samples"] = waits.behind_delete
                res["samples"] = waits.samples
                res["lock_waits_seen"] = sorted(waits.seen)
                row[phase] = res
                print(
                    f"  purge round {rnd + 1} {phase:8s} {res['rps']:7.1f} req/s  "
                    f"p99 {res['p99_ms']:7.2f} ms  lock waits in {waits.waiting}/{waits.samples}"
                    f" samples, behind a DELETE in {waits.behind_delete}"
                )
            row["p99_ratio"] = row["running"]["p99_ms"] / row["paused"]["p99_ms"]
            rows.append(row)
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        stop_process(proc)
    deleted = (
        db.sql(
            "SELECT n_tup_del FROM pg_stat_user_tables WHERE relname = 'django_orders_outbox_event'"
        )[0][0]
        - deleted_before
    )
    results["purge"] = {"rounds": rows, "deleted_during_run": deleted}


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def rss_part(db: Db, args: argparse.Namespace, options: dict, results: dict) -> None:
    os.environ["BENCH_DATABASE_URL"] = db.url
    db.forget_burst()
    (proc,) = start_relays(1, WEBHOOK, options, batch_size=100)
    samples = []
    t0 = time.monotonic()
    try:
        done = 0
        while done < args.rss_events:
            count = min(args.rss_chunk, args.rss_events - done)
            db.burst(count)
            db.wait_published(timeout=max(300, count / 50))
            db.forget_burst()
            done += count
            samples.append(
                {"events": done, "rss_kib": rss_kib(proc.pid), "seconds": time.monotonic() - t0}
            )
            print(f"  rss after {done:8d} events: {samples[-1]['rss_kib'] / 1024:7.1f} MiB")
    finally:
        stop_relays([proc])
    first, last = samples[0]["rss_kib"], samples[-1]["rss_kib"]
    results["rss"] = {
        "samples": samples,
        "growth_mib_after_first_chunk": (last - first) / 1024,
        "max_mib": max(s["rss_kib"] for s in samples) / 1024,
    }


def main() -> None:
    args = parse_args()
    parts = set(args.only or ("create", "relay", "purge", "rss"))
    RESULTS_DIR.mkdir(exist_ok=True)
    base = database_url()
    empty, volume = Db("empty", base + "_empty"), Db("volume", base + "_volume")
    for db in (empty, volume):
        db.ensure()
    os.environ["BENCH_DATABASE_URL"] = empty.url
    seed.truncate()
    counts = volume.counts()
    if not (args.reuse_seed and counts.get("django_orders_outbox_event", 0) >= args.events):
        print(f"seeding {volume.url}")
        seed_volume(volume, args)
    info = machine()
    info["volume"] = volume.counts()
    results: dict[str, Any] = {"machine": info, "rounds": []}
    receiver = Receiver(args.receiver_port)
    options = {"url": receiver.url + "/hook", "secret": SECRET, "max_concurrency": 16}
    servers: dict[str, GunicornServer] = {}
    try:
        if parts & {"create", "purge"}:
            servers["empty"] = start_server(empty, args, args.port)
            servers["volume"] = start_server(volume, args, args.port + 1)
            for name in ("empty", "volume"):  # warm-up
                wrk_create(servers[name], args, f"warm-{name}-{time.time()}", 2)
        for rnd in range(args.rounds if parts & {"create", "relay"} else 0):
            row: dict[str, Any] = {}
            for db in (empty, volume) if rnd % 2 == 0 else (volume, empty):
                if "create" in parts:
                    res = wrk_create(
                        servers[db.name], args, f"{db.name}-{rnd}-{time.time()}", args.duration
                    )
                    row[f"create/{db.name}"] = res
                    db.settle_creates()
                    print(
                        f"  round {rnd + 1} create {db.name:6s} {res['rps']:7.1f} req/s  "
                        f"p99 {res['p99_ms']:6.2f} ms  "
                        f"{res['server_cpu_ms_per_req']:.2f} ms CPU/req"
                    )
                if "relay" in parts:
                    res = relay_rate(db, args, options)
                    row[f"relay/{db.name}"] = res
                    print(f"  round {rnd + 1} relay  {db.name:6s} {res['rate']:7.0f} events/s")
            results["rounds"].append(row)
        if "purge" in parts:
            purge_part(volume, servers["volume"], args, results)
        if "rss" in parts:
            rss_part(empty, args, options, results)
    finally:
        for server in servers.values():
            server.stop()
        receiver.stop()

    lines = []
    for what, key in (("create", "rps"), ("relay", "rate")):
        if what in parts:
            ratios = [r[f"{what}/volume"][key] / r[f"{what}/empty"][key] for r in results["rounds"]]
            lines.append(
                f"{what}: volume / empty = {median(ratios):.2f} x "
                f"(rounds {', '.join(f'{x:.2f}' for x in ratios)})"
            )
    if "create" in parts:
        ratios = [
            r["create/volume"]["server_cpu_ms_per_req"] / r["create/empty"]["server_cpu_ms_per_req"]
            for r in results["rounds"]
        ]
        lines.append(f"create CPU per request: volume / empty = {median(ratios):.2f} x")
    if "purge" in parts:
        p = results["purge"]
        ratios = [r["p99_ratio"] for r in p["rounds"]]
        waits = {
            phase: (
                sum(r[phase]["lock_wait_samples"] for r in p["rounds"]),
                sum(r[phase]["samples"] for r in p["rounds"]),
            )
            for phase in ("paused", "running")
        }
        behind = sum(r["running"]["behind_delete_samples"] for r in p["rounds"])
        lines.append(
            f"create p99 with the purge running / paused = {median(ratios):.2f} x "
            f"(rounds {', '.join(f'{x:.2f}' for x in ratios)}); samples with a backend "
            f"waiting on a lock: running {waits['running'][0]}/{waits['running'][1]}, "
            f"paused {waits['paused'][0]}/{waits['paused'][1]}; behind the purge's DELETE: "
            f"{behind}; "
            f"events deleted meanwhile: {p['deleted_during_run']}"
        )
    if "rss" in parts:
        r = results["rss"]
        lines.append(
            f"relay RSS growth over {args.rss_events} events after the first "
            f"{args.rss_chunk}: {r['growth_mib_after_first_chunk']:+.1f} MiB "
            f"(max {r['max_mib']:.1f} MiB)"
        )
    results["summary"] = "\n".join(lines)
    path = save_results("volume", results)
    print(results["summary"])
    print(f"saved {path}")


if __name__ == "__main__":
    main()
