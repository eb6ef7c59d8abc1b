#!/usr/bin/env python
"""The API's endpoints under two or more versions of the package, interleaved round by round.

    .venv/bin/python bench/interleave_api.py \\
        --side before=<checkout of the older commit>:<its venv's python> \\
        --side after=.:.venv/bin/python --rounds 3

A *side* is a checkout (its ``django_orders`` and its ``bench/benchproject`` are what its
gunicorn serves) and the Python whose environment runs it. Each side gets a database of
its own (``BENCH_DATABASE_URL`` + ``_<side>``: the sides' migrations may differ), seeded
with this checkout's ``bench/seed.py``, and a server of its own, started once, as
``bench/run_api.py`` starts it (``gthread``, 2 worker processes × 4 threads, persistent
connections; each worker process a gunicorn of its own on its own port, so that wrk's
connections split over them evenly: ``harness.GunicornServer``). Then every round runs
each scenario on every side back to back (wrk, 8 connections, 4 on each worker process;
sides in reversed order every other round, scenarios too), so the load of a shared
machine falls on all sides alike. Ratios are taken within a round and the median over
rounds is reported: requests/s, and the CPU per request of the side's gunicorn
processes (user + system, ``/proc``, summed over the worker processes and their
masters) beside it — far less sensitive to the machine's load than the rate.
PostgreSQL's CPU per request counts every backend on the server (other users of it
too). Each measurement records the connections each worker process held halfway
through (``connections_per_worker``); an uneven split is printed as UNEVEN.

Scenarios: ``ref_create`` (the plain DRF create of ``bench/benchproject/refviews.py``),
``create`` (a new ``Idempotency-Key`` per request), ``confirm`` (``If-Match: "1"`` on
fresh drafts), ``close`` (``If-Match: "2"`` on fresh confirmed orders), ``get`` (one
order), ``list_page1`` (a page of 20 of a tenant of 200,000 orders), ``noop`` (a DRF
view without database). ``--only`` picks some. Results: printed, and
``bench/results/interleave-api-<stamp>.json``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import seed
from harness import (
    RESULTS_DIR,
    GunicornServer,
    api_arg_parser,
    database_url,
    free_port,
    machine,
    measure_wrk,
    median,
    psql,
    save_results,
)

REF = "ref_create"
SCENARIOS = ("noop", "ref_create", "create", "confirm", "close", "get", "list_page1")


class Side:
    """One version of the package: its checkout, its Python, its database and server."""

    def __init__(self, spec: str) -> None:
        self.name, _, rest = spec.partition("=")
        checkout, _, python = rest.partition(":")
        self.checkout = Path(checkout).resolve()
        self.python = Path(python or sys.executable)
        if not self.python.is_absolute():
            self.python = Path.cwd() / self.python
        self.database_url = f"{database_url()}_{self.name}"
        self.server: GunicornServer | None = None
        self.files: dict[str, Path] = {}
        self.chunks: dict[str, list[list[str]]] = {}

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = f"{self.checkout / 'bench'}{os.pathsep}{self.checkout}"
        env["DJANGO_SETTINGS_MODULE"] = "benchproject.settings"
        env["BENCH_DATABASE_URL"] = self.database_url
        return env

    @contextmanager
    def database(self):
        """harness.psql() and seed.* act on this side's database inside the block."""
        saved = os.environ.get("BENCH_DATABASE_URL")
        os.environ["BENCH_DATABASE_URL"] = self.database_url
        try:
            yield
        finally:
            if saved is None:
                del os.environ["BENCH_DATABASE_URL"]
            else:
                os.environ["BENCH_DATABASE_URL"] = saved

    def prepare(self, args: argparse.Namespace, chunk: int, runs: int) -> None:
        name = self.database_url.rsplit("/", 1)[1]
        admin = self.database_url.rsplit("/", 1)[0] + "/postgres"
        exists = subprocess.run(
            ["psql", admin, "-qAt", "-c", f"SELECT 1 FROM pg_database WHERE datname = '{name}'"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if not exists:
            subprocess.run(["psql", admin, "-qc", f'CREATE DATABASE "{name}"'], check=True)
        subprocess.run(
            [str(self.python), "-m", "django", "migrate", "--verbosity", "0"],
            env=self.env(),
            cwd=self.checkout,
            check=True,
        )
        with self.database():
            seed.seed_api(
                list_orders=args.list_orders,
                confirm_drafts=chunk * runs,
                close_confirmed=chunk * runs if "close" in args.scenarios else 0,
            )
            ids = {
                "confirm": list(reversed(seed.tenant_ids(seed.CONFIRM_TENANT))),
                "close": list(reversed(seed.tenant_ids(seed.CLOSE_TENANT))),
            }
            gets = seed.tenant_ids(seed.GET_TENANT)[:1000]
        for action, all_ids in ids.items():
            self.chunks[action] = [all_ids[i : i + chunk] for i in range(0, len(all_ids), chunk)]
        self.files["get"] = RESULTS_DIR / f"interleave-{self.name}-get-ids.txt"
        self.files["get"].write_text("\n".join(gets) + "\n")

    def ids_file(self, action: str) -> str:
        """A file of ids no run has used yet, for a transition."""
        if not self.chunks[action]:
            raise RuntimeError(f"{self.name}: out of seeded orders to {action}")
        path = RESULTS_DIR / f"interleave-{self.name}-{action}-ids.txt"
        path.write_text("\n".join(self.chunks[action].pop(0)) + "\n")
        return str(path)

    def start(self, args: argparse.Namespace) -> None:
        self.server = GunicornServer(
            args,
            port=free_port(),
            log_name=f"interleave-{self.name}-gunicorn",
            gunicorn=self.python.parent / "gunicorn",
            env=self.env(),
            cwd=self.checkout,
        )
        self.server.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


def scenario_env(side: Side, name: str) -> tuple[str, dict[str, str]]:
    """(wrk script, its environment) for one run of a scenario on a side."""
    key = f"{uuid.uuid4().hex[:12]}"
    if name == "noop":
        return "get_path.lua", {"BENCH_PATH": "/ref/noop"}
    if name == "ref_create":
        return "create.lua", {
            "BENCH_PATH": "/ref/create",
            "BENCH_TENANT": seed.REF_CREATE_TENANT,
            "BENCH_KEY_PREFIX": f"ref-{key}",
        }
    if name == "create":
        return "create.lua", {
            "BENCH_PATH": "/orders",
            "BENCH_TENANT": seed.CREATE_TENANT,
            "BENCH_KEY_PREFIX": f"c-{key}",
        }
    if name in ("confirm", "close"):
        tenant = seed.CONFIRM_TENANT if name == "confirm" else seed.CLOSE_TENANT
        return "confirm.lua", {
            "BENCH_ACTION": name,
            "BENCH_TENANT": tenant,
            "BENCH_IDS_FILE": side.ids_file(name),
        }
    if name == "get":
        return "get.lua", {
            "BENCH_TENANT": seed.GET_TENANT,
            "BENCH_IDS_FILE": str(side.files["get"]),
        }
    if name == "list_page1":
        return "get_path.lua", {"BENCH_TENANT": seed.LIST_TENANT, "BENCH_PATH": "/orders?limit=20"}
    raise ValueError(name)


def measure(side: Side, name: str, args: argparse.Namespace, duration: float) -> dict[str, Any]:
    script, env = scenario_env(side, name)
    assert side.server is not None
    return measure_wrk(side.server, script, args, env=env, duration=duration)


def main() -> None:
    p = api_arg_parser(__doc__, port=None)
    p.add_argument("--side", action="append", required=True, type=Side, help="name=checkout:python")
    p.add_argument("--list-orders", type=int, default=200_000)
    p.add_argument("--only", action="append", choices=SCENARIOS, help="scenarios [all]")
    args = p.parse_args()
    args.scenarios = [s for s in SCENARIOS if s in (args.only or SCENARIOS)]
    sides: list[Side] = args.side
    RESULTS_DIR.mkdir(exist_ok=True)
    chunk = int(max(20_000, args.duration * 3_000))
    for side in sides:
        print(f"preparing {side.name}: {side.checkout} ({side.database_url})", flush=True)
        side.prepare(args, chunk, args.rounds + 1)
    with sides[0].database():
        info = machine()
    info["sides"] = {
        s.name: {
            "checkout": str(s.checkout),
            "commit": subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
                cwd=s.checkout,
            ).stdout.strip(),
            "python": str(s.python),
        }
        for s in sides
    }
    rows: list[dict[str, dict[str, dict[str, Any]]]] = []
    try:
        for side in sides:
            side.start(args)
        print("warm-up", flush=True)
        for side in sides:
            for name in args.scenarios:
                measure(side, name, args, 2)
        for rnd in range(args.rounds):
            row: dict[str, dict[str, dict[str, Any]]] = {}
            names = args.scenarios if rnd % 2 == 0 else list(reversed(args.scenarios))
            for name in names:
                order = sides if rnd % 2 == 0 else list(reversed(sides))
                for side in order:
                    res = measure(side, name, args, args.duration)
                    row.setdefault(name, {})[side.name] = res
                    flag = f"  ERRORS {res['errors']}" if res["errors"] else ""
                    held = res["connections_per_worker"] or []
                    if len(set(held)) != 1 or sum(held) != args.connections:
                        flag += "  UNEVEN"
                    print(
                        f"round {rnd + 1} {name:11s} {side.name:8s} {res['rps']:8.1f} req/s  "
                        f"gunicorn {res['server_cpu_ms_per_req']:.3f} ms/req  "
                        f"PostgreSQL {res['postgres_cpu_ms_per_req']:.3f} ms/req  "
                        f"connections {'/'.join(map(str, held))}  "
                        f"load {os.getloadavg()[0]:.1f}{flag}",
                        flush=True,
                    )
            rows.append(row)
    finally:
        for side in sides:
            side.stop()
        for side in sides:
            with side.database():
                psql("TRUNCATE " + ", ".join(seed.TABLES))
    info["loadavg_end"] = os.getloadavg()
    results = {"machine": info, "rounds": rows}
    path = save_results("interleave-api", results)
    print(report(rows, [s.name for s in sides], args.scenarios))
    print("results:", path)


def report(rows: list[dict[str, Any]], sides: list[str], scenarios: list[str]) -> str:
    """Markdown: medians per scenario and side, then ratios (median of the rounds')."""
    first = sides[0]

    def rps(r: dict[str, Any], name: str, side: str) -> float:
        return r[name][side]["rps"]

    def cpu(r: dict[str, Any], name: str, side: str) -> float:
        return r[name][side]["server_cpu_ms_per_req"]

    def cell(ratio: Callable[[dict[str, Any]], float]) -> str:
        values = [ratio(r) for r in rows]
        return f"{median(values):.2f} × ({', '.join(f'{v:.2f}' for v in values)})"

    lines = [
        "| scenario | side | req/s | gunicorn CPU ms/req | PostgreSQL CPU ms/req |",
        "|---|---|---:|---:|---:|",
    ]
    for name in scenarios:
        for side in sides:
            pg = median([r[name][side]["postgres_cpu_ms_per_req"] for r in rows])
            lines.append(
                f"| {name} | {side} | {median([rps(r, name, side) for r in rows]):,.0f} "
                f"| {median([cpu(r, name, side) for r in rows]):.2f} | {pg:.2f} |"
            )
    lines += [
        "",
        "| ratio, median of rounds (rounds) | req/s | gunicorn CPU per request |",
        "|---|---:|---:|",
    ]
    for name in scenarios:
        for side in sides[1:]:
            lines.append(
                f"| {name}: {side} / {first} "
                f"| {cell(lambda r, n=name, s=side: rps(r, n, s) / rps(r, n, first))} "
                f"| {cell(lambda r, n=name, s=side: cpu(r, n, s) / cpu(r, n, first))} |"
            )
    if "ref_create" in scenarios:
        # Each endpoint against the plain DRF create, within a side. The CPU column is
        # the reference's CPU over the endpoint's: like req/s, above 1 is cheaper.
        for name in (n for n in scenarios if n not in ("ref_create", "noop")):
            for side in sides:
                lines.append(
                    f"| {side}: {name} / plain DRF create (CPU: plain / {name}) "
                    f"| {cell(lambda r, n=name, s=side: rps(r, n, s) / rps(r, REF, s))} "
                    f"| {cell(lambda r, n=name, s=side: cpu(r, REF, s) / cpu(r, n, s))} |"
                )
    if "get" in scenarios and "list_page1" in scenarios:
        for side in sides:
            lines.append(
                f"| {side}: list page of 20 / GET of one (CPU: list / GET) "
                f"| {cell(lambda r, s=side: rps(r, 'list_page1', s) / rps(r, 'get', s))} "
                f"| {cell(lambda r, s=side: cpu(r, 'list_page1', s) / cpu(r, 'get', s))} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
