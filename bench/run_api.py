#!/usr/bin/env python
"""API benchmark (issue 3): the endpoints under gunicorn on PostgreSQL, driven by wrk.

    .venv/bin/python bench/run_api.py                    # the full run (~12 minutes)
    .venv/bin/python bench/run_api.py --duration 3 --rounds 1 --depth-duration 2   # smoke

Every round measures, back to back on one server (a gunicorn per worker process, see
harness.GunicornServer): a no-database DRF view, the reference plain DRF create, the
package's create, replay, get, confirm, list page 1 and list at depth 100,000 (wrk, 8
connections split evenly over the worker processes), then pgbench running the create's
SQL, then the depth curve of three paginators. Ratios are taken within a round and the
median over rounds is reported. Results: bench/results/api-<stamp>.json (+ -latest.json,
-latest.md); the plot: docs/img/list-depth.png.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import seed
from harness import (
    BENCH_DIR,
    REPO_DIR,
    RESULTS_DIR,
    GunicornServer,
    api_arg_parser,
    database_url,
    ensure_database,
    finish_run,
    fmt_int,
    fmt_ratio,
    machine,
    measure_wrk,
    median,
    psql,
    run_header,
    run_wrk,
)

DEPTHS = (0, 1_000, 10_000, 50_000, 100_000, 190_000)
DEEP = 100_000
REPLAY_POOL = 500
BODY = b'{"totalCents": 1234, "currency": "EUR", "metadata": {"source": "bench"}}'


def parse_args() -> argparse.Namespace:
    p = api_arg_parser(__doc__, port=8089)
    p.add_argument(
        "--depth-duration", type=float, default=5, help="seconds per wrk run of the depth curve [5]"
    )
    p.add_argument("--list-orders", type=int, default=200_000)
    p.add_argument("--pgbench-duration", type=int, default=20)
    p.add_argument("--skip-depth", action="store_true", help="no depth curve")
    p.add_argument("--skip-pgbench", action="store_true")
    p.add_argument("--no-plot", action="store_true")
    return p.parse_args()


def http(
    method: str, url: str, *, headers: dict[str, str], body: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def walk_cursors(base: str, depths: tuple[int, ...]) -> dict[int, str | None]:
    """Walk the list tenant with limit=100 and keep the cursor that starts each depth.

    The package's cursors are opaque and signed: walking is the honest way to get one
    (it also checks, on the way, that every page follows the previous one).
    """
    cursors: dict[int, str | None] = {0: ""}
    wanted = sorted(d for d in depths if d)
    if not wanted:
        return cursors
    seen, cursor = 0, ""
    headers = {"X-Tenant-Id": seed.LIST_TENANT}
    while seen < wanted[-1]:
        query = urllib.parse.urlencode({"limit": 100, "cursor": cursor})
        status, _, body = http("GET", f"{base}/orders?{query}", headers=headers)
        if status != 200:
            raise RuntimeError(f"walk failed at depth {seen}: {status} {body[:200]!r}")
        page = json.loads(body)
        seen += len(page["items"])
        cursor = page.get("nextCursor")
        if not cursor:
            print(f"  walk: no nextCursor at depth {seen}; keyset depths unavailable")
            break
        if seen in wanted:
            cursors[seen] = cursor
    return cursors


def check_depth_page(base: str, depth: int, cursor: str) -> None:
    """The page at ``cursor`` must start with the (depth+1)-th row in SQL order."""
    query = urllib.parse.urlencode({"limit": 20, "cursor": cursor})
    status, _, body = http(
        "GET", f"{base}/orders?{query}", headers={"X-Tenant-Id": seed.LIST_TENANT}
    )
    first = json.loads(body)["items"][0]["id"]
    expected = seed.row_at_depth(seed.LIST_TENANT, depth + 1)[1]
    if status != 200 or first != expected:
        raise RuntimeError(f"depth {depth}: page starts with {first}, SQL says {expected}")


class IdChunks:
    """Fresh drafts for confirm: every wrk run gets ids no run has used."""

    def __init__(self, ids: list[str], chunk: int) -> None:
        self.ids, self.chunk, self.pos = ids, chunk, 0

    def next_file(self) -> str:
        part = self.ids[self.pos : self.pos + self.chunk]
        self.pos += self.chunk
        if len(part) < self.chunk:
            raise RuntimeError("out of seeded drafts for confirm; raise the seed count")
        path = RESULTS_DIR / "confirm-ids.txt"
        path.write_text("\n".join(part) + "\n")
        return str(path)


def api_scenarios(args, server, cursors, confirm_ids) -> list[tuple[str, str, Any]]:
    """(name, lua script, env-or-callable) in the order one round runs them."""
    get_file = RESULTS_DIR / "get-ids.txt"
    get_file.write_text("\n".join(seed.tenant_ids(seed.GET_TENANT)[:1000]) + "\n")
    keys_file = RESULTS_DIR / "replay-keys.txt"
    run_prefix = uuid.uuid4().hex[:12]
    counter = iter(range(10**9))
    scenarios: list[tuple[str, str, Any]] = [
        ("noop", "get_path.lua", {"BENCH_PATH": "/ref/noop"}),
        (
            "ref_create",
            "create.lua",
            lambda: {
                "BENCH_PATH": "/ref/create",
                "BENCH_TENANT": seed.REF_CREATE_TENANT,
                "BENCH_KEY_PREFIX": f"ref-{run_prefix}-{next(counter)}",
            },
        ),
        (
            "create",
            "create.lua",
            lambda: {
                "BENCH_PATH": "/orders",
                "BENCH_TENANT": seed.CREATE_TENANT,
                "BENCH_KEY_PREFIX": f"c-{run_prefix}-{next(counter)}",
            },
        ),
        (
            "replay",
            "replay.lua",
            {"BENCH_TENANT": seed.CREATE_TENANT, "BENCH_KEY": f"replay-{run_prefix}"},
        ),
        (
            "replay_pool",
            "replay_pool.lua",
            {"BENCH_TENANT": seed.CREATE_TENANT, "BENCH_KEYS_FILE": str(keys_file)},
        ),
        ("get", "get.lua", {"BENCH_TENANT": seed.GET_TENANT, "BENCH_IDS_FILE": str(get_file)}),
        (
            "confirm",
            "confirm.lua",
            lambda: {
                "BENCH_TENANT": seed.CONFIRM_TENANT,
                "BENCH_IDS_FILE": confirm_ids.next_file(),
            },
        ),
        (
            "list_page1",
            "get_path.lua",
            {"BENCH_TENANT": seed.LIST_TENANT, "BENCH_PATH": "/orders?limit=20"},
        ),
    ]
    if cursors.get(DEEP):
        deep = urllib.parse.urlencode({"limit": 20, "cursor": cursors[DEEP]})
        scenarios.append(
            (
                "list_depth100k",
                "get_path.lua",
                {"BENCH_TENANT": seed.LIST_TENANT, "BENCH_PATH": f"/orders?{deep}"},
            )
        )
    # The requests the replay scenarios replay, made once before any measurement.
    keys = [f"replay-{run_prefix}"] + [f"pool-{run_prefix}-{i}" for i in range(REPLAY_POOL)]
    statuses = set()
    for key in keys:
        status, _, _ = http(
            "POST",
            server.url + "/orders",
            body=BODY,
            headers={
                "Content-Type": "application/json",
                "X-Tenant-Id": seed.CREATE_TENANT,
                "Idempotency-Key": key,
            },
        )
        statuses.add(status)
    keys_file.write_text("\n".join(keys[1:]) + "\n")
    print(f"  replay keys primed: {len(keys)} creates, statuses {sorted(statuses)}")
    return scenarios


def depth_scenarios(cursors: dict[int, str | None], list_orders: int) -> list[tuple[str, int, str]]:
    """(paginator, depth, path) for the depth curve."""
    rows = []
    for depth in (d for d in DEPTHS if d < list_orders):
        if depth == 0 or cursors.get(depth):
            q = {"limit": 20}
            if depth:
                q["cursor"] = cursors[depth]
            rows.append(("keyset (django-orders)", depth, "/orders?" + urllib.parse.urlencode(q)))
        rows.append(
            ("DRF LimitOffsetPagination", depth, f"/ref/list/offset?limit=20&offset={depth}")
        )
        rows.append(
            ("OFFSET without COUNT", depth, f"/ref/list/offset-nocount?limit=20&offset={depth}")
        )
        q = {"limit": 20}
        if depth:
            stamp, pk = seed.row_at_depth(seed.LIST_TENANT, depth)
            q["after"] = f"{stamp},{pk}"
        rows.append(
            ("OR-expanded keyset", depth, "/ref/list/or-keyset?" + urllib.parse.urlencode(q))
        )
    return rows


PGBENCH_SCRIPTS = {
    # name -> script; "create SQL" is the physical limit of the idempotent create.
    "create SQL": "pgbench_create.sql",
    "create SQL without NOTIFY": None,  # generated from pgbench_create.sql
    "plain insert SQL": "pgbench_plain_insert.sql",
}


def pgbench_script(name: str) -> Path:
    script = PGBENCH_SCRIPTS[name]
    if script is not None:
        return BENCH_DIR / script
    path = RESULTS_DIR / "pgbench_create_no_notify.sql"
    text = (BENCH_DIR / "pgbench_create.sql").read_text()
    without = text.replace(" \\;\nNOTIFY django_orders_outbox;", ";")
    if without == text:
        raise RuntimeError("pgbench_create.sql: no ' \\;' + NOTIFY line to take out")
    path.write_text(without)
    return path


def run_pgbench(seconds: int, clients: int, name: str = "create SQL") -> dict[str, Any]:
    cmd = [
        "pgbench",
        "-n",
        "-c",
        str(clients),
        "-j",
        "1",
        "-T",
        str(seconds),
        "-f",
        str(pgbench_script(name)),
        database_url(),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120)
    tps = re.search(r"tps = ([\d.]+)", out.stdout)
    lat = re.search(r"latency average = ([\d.]+) ms", out.stdout)
    failed = re.search(r"number of failed transactions: (\d+)", out.stdout)
    if not tps:
        raise RuntimeError(f"pgbench failed:\n{out.stdout}\n{out.stderr}")
    return {
        "tps": float(tps.group(1)),
        "latency_avg_ms": float(lat.group(1)) if lat else None,
        "failed": int(failed.group(1)) if failed else 0,
    }


def explain_deep(cursor_row: tuple[str, str]) -> dict[str, str]:
    """EXPLAIN ANALYZE of the two keyset predicates at depth 100,000 (evidence for why the
    OR-expanded one slows down with depth)."""
    stamp, pk = cursor_row
    base = (
        f"SELECT * FROM django_orders_order WHERE tenant_id = '{seed.LIST_TENANT}' AND {{}} "
        "ORDER BY created_at DESC, id DESC LIMIT 21"
    )
    preds = {
        "row_value": f"(created_at, id) < ('{stamp}'::timestamptz, '{pk}'::uuid)",
        "or_expanded": f"(created_at < '{stamp}'::timestamptz OR "
        f"(created_at = '{stamp}'::timestamptz AND id < '{pk}'::uuid))",
    }
    return {
        name: psql("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + base.format(pred))
        for name, pred in preds.items()
    }


def explain_package_list(cursor: str) -> str:
    """EXPLAIN ANALYZE of the very SQL the package runs for the page at ``cursor``
    (captured in-process through Django's test client)."""
    from harness import setup_django

    setup_django()
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    query = urllib.parse.urlencode({"limit": 20, "cursor": cursor})
    with CaptureQueriesContext(connection) as captured:
        response = Client().get(f"/orders?{query}", HTTP_X_TENANT_ID=seed.LIST_TENANT)
    if response.status_code != 200:
        return f"(list answered {response.status_code})"
    selects = [q["sql"] for q in captured.captured_queries if q["sql"].startswith("SELECT")]
    with connection.cursor() as cur:
        cur.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + selects[-1])
        plan = "\n".join(row[0] for row in cur.fetchall())
    return f"{selects[-1]}\n\n{plan}"


def main() -> None:
    args = parse_args()
    RESULTS_DIR.mkdir(exist_ok=True)
    print("preparing database", database_url())
    ensure_database()
    runs_needing_drafts = args.rounds + 1  # + warm-up
    chunk = int(max(20_000, args.duration * 3_000))
    seed.seed_api(list_orders=args.list_orders, confirm_drafts=chunk * runs_needing_drafts)
    confirm_ids = IdChunks(list(reversed(seed.tenant_ids(seed.CONFIRM_TENANT))), chunk)
    info = machine()
    info["server"] = (
        f"gunicorn {args.worker_class} workers={args.workers}"
        + (f" threads={args.threads}" if args.worker_class == "gthread" else "")
        + " (one gunicorn per worker, each on its own port)"
    )
    info["load"] = (
        f"wrk -t{args.workers} -c{args.connections}"
        f" ({args.connections // args.workers} per worker)"
        + (f" pinned to CPU {args.wrk_cpu}" if args.wrk_cpu else "")
    )
    server = GunicornServer(args)
    server.start()
    results: dict[str, Any] = {"machine": info, "rounds": [], "depth": [], "pgbench": []}
    try:
        print("walking the list for cursors")
        t0 = time.monotonic()
        cursors = walk_cursors(server.url, DEPTHS if not args.skip_depth else (0, DEEP))
        print(f"  walked in {time.monotonic() - t0:.1f}s: depths {sorted(cursors)}")
        for depth, cursor in cursors.items():
            if depth and cursor:
                check_depth_page(server.url, depth, cursor)
        scenarios = api_scenarios(args, server, cursors, confirm_ids)
        print("warm-up")
        for _name, script, env in scenarios:
            run_wrk(
                server.urls,
                script,
                duration=2,
                connections=args.connections,
                env=env() if callable(env) else env,
                cpu=args.wrk_cpu,
            )
        for rnd in range(args.rounds):
            order = scenarios if rnd % 2 == 0 else list(reversed(scenarios))
            row: dict[str, Any] = {"loadavg": os.getloadavg()}
            for name, script, env in order:
                res = measure_wrk(server, script, args, env=env)
                row[name] = res
                flag = f"  ERRORS {res['errors']}" if res["errors"] else ""
                print(
                    f"  round {rnd + 1} {name:15s} {res['rps']:9.1f} req/s  "
                    f"p50 {res['p50_ms']:6.2f} ms  p99 {res['p99_ms']:7.2f} ms  "
                    f"wrk cpu {res['wrk_cpu_share']:.2f}{flag}"
                )
            results["rounds"].append(row)
            if not args.skip_pgbench:
                pg = {
                    name: run_pgbench(args.pgbench_duration, args.connections, name)
                    for name in PGBENCH_SCRIPTS
                }
                results["pgbench"].append(pg)
                print(
                    f"  round {rnd + 1} pgbench "
                    + ", ".join(f"{name} {v['tps']:.0f} tps" for name, v in pg.items())
                )
            if not args.skip_depth:
                for paginator, depth, path in depth_scenarios(cursors, args.list_orders):
                    res = run_wrk(
                        server.urls,
                        "get_path.lua",
                        duration=args.depth_duration,
                        connections=args.connections,
                        cpu=args.wrk_cpu,
                        env={"BENCH_TENANT": seed.LIST_TENANT, "BENCH_PATH": path},
                    )
                    results["depth"].append(
                        {"round": rnd, "paginator": paginator, "depth": depth, **res}
                    )
                    print(
                        f"  round {rnd + 1} depth {depth:>7,} {paginator:28s} "
                        f"{res['rps']:8.1f} req/s  p99 {res['p99_ms']:7.2f} ms"
                        + (f"  ERRORS {res['errors']}" if res["errors"] else "")
                    )
        if cursors.get(DEEP):
            results["explain"] = explain_deep(seed.row_at_depth(seed.LIST_TENANT, DEEP))
            results["explain"]["package"] = explain_package_list(cursors[DEEP])
            (RESULTS_DIR / "api-latest-explain.txt").write_text(
                "\n\n".join(f"== {k}\n{v}" for k, v in results["explain"].items())
            )
    finally:
        server.stop()
    finish_run("api", results, summarize, render_markdown)
    if results["depth"] and not args.no_plot:
        from plot import plot_depth

        out = plot_depth(results, REPO_DIR / "docs" / "img" / "list-depth.png")
        print("plot:", out)


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    rounds = results["rounds"]
    names = [k for k in rounds[0] if k != "loadavg"] if rounds else []
    summary: dict[str, Any] = {"scenarios": {}, "ratios": {}}
    for name in names:
        summary["scenarios"][name] = {
            key: median([r[name][key] for r in rounds if name in r])
            for key in (
                "rps",
                "p50_ms",
                "p99_ms",
                "wrk_cpu_share",
                "server_cpu_ms_per_req",
                "postgres_cpu_ms_per_req",
            )
        } | {"errors": sum(r[name]["errors"] for r in rounds if name in r)}

    def ratio(a: str, b: str) -> float | None:
        vals = [r[a]["rps"] / r[b]["rps"] for r in rounds if a in r and b in r and r[b]["rps"]]
        return median(vals) if vals else None

    summary["ratios"]["create / plain DRF create"] = ratio("create", "ref_create")
    summary["ratios"]["list depth 100k / list page 1"] = ratio("list_depth100k", "list_page1")
    for name in names:
        if name != "noop":
            summary["ratios"][f"{name} / no-op DRF view"] = ratio(name, "noop")
    if results["pgbench"]:
        pgs = results["pgbench"]
        vals = [
            r["create"]["rps"] / pg["create SQL"]["tps"] for r, pg in zip(rounds, pgs, strict=False)
        ]
        summary["ratios"]["create / pgbench create SQL (physical limit)"] = median(vals)
        summary["ratios"]["pgbench: create SQL / plain insert SQL"] = median(
            [pg["create SQL"]["tps"] / pg["plain insert SQL"]["tps"] for pg in pgs]
        )
        summary["ratios"]["pgbench: create SQL / same without NOTIFY"] = median(
            [pg["create SQL"]["tps"] / pg["create SQL without NOTIFY"]["tps"] for pg in pgs]
        )
        summary["pgbench_tps"] = {
            name: median([pg[name]["tps"] for pg in pgs]) for name in PGBENCH_SCRIPTS
        }
    # Depth curve: each paginator relative to its own page 1, and to our keyset at 0.
    curve: dict[str, dict[int, dict[str, float]]] = {}
    for row in results["depth"]:
        curve.setdefault(row["paginator"], {}).setdefault(row["depth"], {"rps": [], "p99": []})
        curve[row["paginator"]][row["depth"]]["rps"].append(row["rps"])
        curve[row["paginator"]][row["depth"]]["p99"].append(row["p99_ms"])
    summary["depth"] = {
        pag: {
            d: {"rps": median(v["rps"]), "p99_ms": median(v["p99"])}
            for d, v in sorted(by_depth.items())
        }
        for pag, by_depth in curve.items()
    }
    return summary


def render_markdown(results: dict[str, Any]) -> str:
    s, m = results["summary"], results["machine"]
    lines = [
        run_header(m, m["server"], m["load"]),
        "",
        "| ratio (median of rounds) | value |",
        "|---|---|",
    ]
    for name, value in s["ratios"].items():
        if value is not None:
            lines.append(f"| {name} | {fmt_ratio(value)} |")
    lines += [
        "",
        "| scenario | req/s | p50 ms | p99 ms | gunicorn CPU ms/req | "
        "PostgreSQL CPU ms/req | wrk CPU | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, v in s["scenarios"].items():
        lines.append(
            f"| {name} | {fmt_int(v['rps'])} | {v['p50_ms']:.2f} | {v['p99_ms']:.2f} "
            f"| {v['server_cpu_ms_per_req']:.2f} | {v['postgres_cpu_ms_per_req']:.2f} "
            f"| {v['wrk_cpu_share']:.0%} | {v['errors']} |"
        )
    for name, tps in s.get("pgbench_tps", {}).items():
        lines.append(f"| pgbench: {name} (tps) | {fmt_int(tps)} | | | | | | |")
    if s["depth"]:
        depths = sorted({d for by in s["depth"].values() for d in by})
        lines += [
            "",
            "| paginator | " + " | ".join(f"{d:,}" for d in depths) + " |",
            "|---|" + "---:|" * len(depths),
        ]
        for pag, by in s["depth"].items():
            base = by.get(0, {}).get("rps")
            cells = []
            for d in depths:
                if d in by:
                    rel = f" ({by[d]['rps'] / base:.2f} ×)" if base else ""
                    cells.append(f"{fmt_int(by[d]['rps'])}{rel}")
                else:
                    cells.append("—")
            lines.append(f"| {pag} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
