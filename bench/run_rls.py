"""What row-level security costs per request (docs/guide/row-level-security.md).

Two gunicorn servers of the bench project, identical but for ``ROW_LEVEL_SECURITY``, both
connecting as a role the policies bind (``-c role=…`` at connection start: the superuser
the benchmark otherwise connects as is never bound). Each round measures one, then the
other (the order alternates between rounds), with the policies installed for the "on" half
and removed for the "off" half: "off" is the package as it is without the feature.
Reported: per scenario, req/s and CPU per request of the server and of PostgreSQL, medians
over the rounds, and on/off ratios taken within each round.

    .venv/bin/python bench/run_rls.py                 # 3 rounds of 10 s per scenario
    .venv/bin/python bench/run_rls.py --duration 3 --rounds 1   # smoke run
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import seed
from harness import (
    RESULTS_DIR,
    GunicornServer,
    _proc_stats,
    api_arg_parser,
    database_name,
    ensure_database,
    machine,
    measure_wrk,
    median,
    psql,
    save_results,
)
from run_api import IdChunks

SCENARIOS = ("create", "get", "confirm", "list_page1")


def parse_args() -> argparse.Namespace:
    p = api_arg_parser(__doc__, port=8093, port_help="the off server; on is port + 1")
    p.add_argument("--list-orders", type=int, default=20_000)
    return p.parse_args()


def role_name() -> str:
    return f"{database_name()}_app"


def create_role() -> None:
    role = role_name()
    psql(
        f'DO $$ BEGIN CREATE ROLE "{role}" NOLOGIN NOSUPERUSER NOBYPASSRLS; '
        "EXCEPTION WHEN duplicate_object THEN NULL; END $$"
    )
    psql(
        f'GRANT USAGE ON SCHEMA public TO "{role}"; '
        f'GRANT ALL ON ALL TABLES IN SCHEMA public TO "{role}"; '
        f'GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO "{role}"'
    )


def drop_role() -> None:
    role = role_name()
    psql(f'DROP OWNED BY "{role}"; DROP ROLE IF EXISTS "{role}"')


def set_policies(on: bool) -> None:
    from harness import setup_django

    setup_django()
    from django_orders import rls

    statements = rls.install_statements() if on else rls.remove_statements()
    psql("; ".join(statements))
    check_policies_bind(on)


def scenarios(confirm_ids: IdChunks, run_prefix: str) -> dict[str, tuple[str, Any]]:
    get_file = RESULTS_DIR / "rls-get-ids.txt"
    get_file.write_text("\n".join(seed.tenant_ids(seed.GET_TENANT)[:1000]) + "\n")
    counter = iter(range(10**9))
    return {
        "create": (
            "create.lua",
            lambda: {
                "BENCH_PATH": "/orders",
                "BENCH_TENANT": seed.CREATE_TENANT,
                "BENCH_KEY_PREFIX": f"rls-{run_prefix}-{next(counter)}",
            },
        ),
        "get": ("get.lua", {"BENCH_TENANT": seed.GET_TENANT, "BENCH_IDS_FILE": str(get_file)}),
        "confirm": (
            "confirm.lua",
            lambda: {
                "BENCH_TENANT": seed.CONFIRM_TENANT,
                "BENCH_IDS_FILE": confirm_ids.next_file(),
            },
        ),
        "list_page1": (
            "get_path.lua",
            {"BENCH_TENANT": seed.LIST_TENANT, "BENCH_PATH": "/orders?limit=20"},
        ),
    }


def backend_cpu() -> float:
    """CPU seconds of the PostgreSQL backends connected to the benchmark database: the
    servers' persistent connections. (All postgres processes would count the other users
    of a shared server too, and go backwards when their processes exit.)"""
    pids = {
        int(p)
        for p in psql(
            f"SELECT pid FROM pg_stat_activity WHERE datname = '{database_name()}' "
            "AND pid <> pg_backend_pid()"
        ).split()
    }
    return sum(cpu for pid, _, _, cpu in _proc_stats() if pid in pids)


def check_policies_bind(on: bool) -> None:
    """As the role, outside any tenant's transaction: no row with the policies, rows without."""
    count = int(psql(f'SET ROLE "{role_name()}"; SELECT count(*) FROM django_orders_order'))
    if (count == 0) != on:
        raise RuntimeError(f"policies {'on' if on else 'off'} but the role sees {count} orders")


def measure(
    server: GunicornServer, script: str, env: Any, args: argparse.Namespace
) -> dict[str, Any]:
    """:func:`harness.measure_wrk`, PostgreSQL's CPU counted on the database's own backends."""
    backends = backend_cpu()
    res = measure_wrk(server, script, args, env=env)
    res["postgres_cpu_ms_per_req"] = (backend_cpu() - backends) * 1000 / max(res["requests"], 1)
    return res


def main() -> None:
    args = parse_args()
    RESULTS_DIR.mkdir(exist_ok=True)
    ensure_database()
    runs = 2 * (args.rounds + 1)  # both servers, + warm-up
    chunk = int(max(10_000, args.duration * 3_000))
    seed.seed_api(list_orders=args.list_orders, confirm_drafts=chunk * runs, noise_orders=20_000)
    confirm_ids = IdChunks(list(reversed(seed.tenant_ids(seed.CONFIRM_TENANT))), chunk)
    create_role()
    info = machine()
    servers: dict[str, GunicornServer] = {}
    results: dict[str, Any] = {"machine": info, "rounds": []}
    try:
        for name, port, rls in (("off", args.port, ""), ("on", args.port + 1, "1")):
            os.environ["BENCH_DB_ROLE"] = role_name()
            os.environ["BENCH_RLS"] = rls
            servers[name] = GunicornServer(args, port=port)
            servers[name].start()
        plan = scenarios(confirm_ids, str(int(time.time())))
        print("warm-up")
        for name in ("off", "on"):
            set_policies(name == "on")
            for script, env in plan.values():
                measure(
                    servers[name], script, env, argparse.Namespace(**{**vars(args), "duration": 2})
                )
        for rnd in range(args.rounds):
            row: dict[str, Any] = {}
            for name in ("off", "on") if rnd % 2 == 0 else ("on", "off"):
                set_policies(name == "on")
                for scenario, (script, env) in plan.items():
                    res = measure(servers[name], script, env, args)
                    row[f"{scenario}/{name}"] = res
                    print(
                        f"  round {rnd + 1} {scenario:11s} rls {name:3s} {res['rps']:8.1f} req/s  "
                        f"server {res['server_cpu_ms_per_req']:.3f} ms/req  "
                        f"postgres {res['postgres_cpu_ms_per_req']:.3f} ms/req  "
                        f"errors {res['errors']}"
                    )
            results["rounds"].append(row)
    finally:
        for server in servers.values():
            server.stop()
        set_policies(False)
        drop_role()

    lines = [
        "| scenario | req/s on/off | server CPU/req on/off | PostgreSQL CPU/req on/off "
        "| server ms/req off → on |",
        "|---|---|---|---|---|",
    ]
    for scenario in SCENARIOS:

        def ratio(key: str, sc: str = scenario) -> float:
            return median(
                [
                    r[f"{sc}/on"][key] / r[f"{sc}/off"][key]
                    for r in results["rounds"]
                    if r[f"{sc}/off"][key]
                ]
            )

        off_ms = median([r[f"{scenario}/off"]["server_cpu_ms_per_req"] for r in results["rounds"]])
        on_ms = median([r[f"{scenario}/on"]["server_cpu_ms_per_req"] for r in results["rounds"]])
        lines.append(
            f"| {scenario} | {ratio('rps'):.2f} | {ratio('server_cpu_ms_per_req'):.2f} "
            f"| {ratio('postgres_cpu_ms_per_req'):.2f} | {off_ms:.2f} → {on_ms:.2f} |"
        )
    summary = "\n".join(lines)
    results["summary"] = summary
    path = save_results("rls", results)
    print(summary)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
