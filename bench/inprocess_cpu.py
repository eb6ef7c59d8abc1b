#!/usr/bin/env python
"""The CPU a request costs in-process, without a server or load generator, side by side.

    BENCH_DATABASE_URL=… .venv/bin/python bench/inprocess_cpu.py \\
        --side main=<checkout of main> --side branch=. --rounds 5 [--only confirm …]

Each side is a checkout whose ``django_orders`` and ``bench/benchproject`` a child Python
(this one) imports; its database is ``BENCH_DATABASE_URL`` (migrated beforehand, e.g. by
``bench/interleave_api.py``). A child sends ``--warm`` requests through Django's test
client, then ``--requests`` more, and reports the process CPU (``time.process_time()``:
every thread, user + system) of those per request, for the plain DRF create
(``/ref/create``, always: the reference) and what ``--only`` picks — the idempotent create
(``/orders``, a new key each time; the default), ``confirm`` (``If-Match: "1"`` on fresh
drafts), ``close`` (``If-Match: "2"`` on fresh confirmed orders), ``get`` (one of 100
orders) and ``list_page1`` (the first page of 20 of those 100: a third each draft, confirmed
and closed), whose orders the child makes before it starts counting; with both of the last
two, the list page against the GET as well. Sides and paths alternate within every round;
medians over rounds. No network, no gunicorn, no ``wrk``: what is left is the Python the
request runs plus the driver's side of its round trips, which a loaded machine disturbs less
than a server's rate.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

SCENARIOS = ("ref_create", "create", "confirm", "close", "get", "list_page1")

CHILD = """
import json, os, sys, time, uuid
import django
django.setup()
from django.db import transaction
from django.test import Client
from django_orders import services
name, warm, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
client = Client()
body = '{"totalCents": 1234, "currency": "EUR", "metadata": {"source": "bench"}}'
run = uuid.uuid4().hex
tenant = "bench-cpu-" + name
orders = []
if name in ("confirm", "close"):  # made before anything is counted
    for _ in range(warm + count):
        order = services.create_order(tenant)
        if name == "close":
            with transaction.atomic():
                locked = services.get_order_for_update(tenant, order.id)
                services.confirm_order(locked, total_cents=5)
        orders.append(str(order.id))
if name in ("get", "list_page1"):  # 100 orders, a third each draft, confirmed, closed
    for n in range(100):
        order = services.create_order(tenant)
        if n % 3:
            with transaction.atomic():
                order = services.get_order_for_update(tenant, order.id)
                services.confirm_order(order, total_cents=1000 + n)
        if n % 3 == 2:
            with transaction.atomic():
                services.close_order(services.get_order_for_update(tenant, order.id))
        orders.append(str(order.id))
def one(i):
    if name == "confirm":
        response = client.patch(f"/orders/{orders[i]}/confirm", '{"totalCents": 1000}',
                                content_type="application/json", HTTP_X_TENANT_ID=tenant,
                                HTTP_IF_MATCH='"1"', SERVER_NAME="localhost")
    elif name == "close":
        response = client.generic("POST", f"/orders/{orders[i]}/close", HTTP_X_TENANT_ID=tenant,
                                  HTTP_IF_MATCH='"2"', SERVER_NAME="localhost")
    elif name == "get":
        response = client.get(f"/orders/{orders[i % len(orders)]}", HTTP_X_TENANT_ID=tenant,
                              SERVER_NAME="localhost")
    elif name == "list_page1":
        response = client.get("/orders?limit=20", HTTP_X_TENANT_ID=tenant, SERVER_NAME="localhost")
    else:
        path = "/ref/create" if name == "ref_create" else "/orders"
        response = client.post(path, body, content_type="application/json",
                               HTTP_X_TENANT_ID=tenant, HTTP_IDEMPOTENCY_KEY=f"cpu-{run}-{i}",
                               SERVER_NAME="localhost")
    assert 200 <= response.status_code < 300, (response.status_code, response.content)
for i in range(warm):
    one(i)
start = time.process_time()
for i in range(warm, warm + count):
    one(i)
print(json.dumps((time.process_time() - start) / count * 1000))
"""


def measure(checkout: Path, name: str, args: argparse.Namespace) -> float:
    env = dict(os.environ)
    env["PYTHONPATH"] = f"{checkout / 'bench'}{os.pathsep}{checkout}"
    env["DJANGO_SETTINGS_MODULE"] = "benchproject.settings"
    out = subprocess.run(
        [sys.executable, "-c", CHILD, name, str(args.warm), str(args.requests)],
        env=env,
        cwd=checkout,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(json.loads(out.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--side", action="append", required=True, help="name=checkout")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warm", type=int, default=200)
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument(
        "--only", action="append", choices=SCENARIOS[1:], help="besides ref_create [create]"
    )
    args = parser.parse_args()
    names = ["ref_create", *(args.only or ["create"])]
    sides = [(spec.partition("=")[0], Path(spec.partition("=")[2]).resolve()) for spec in args.side]
    results: dict[tuple[str, str], list[float]] = {}
    for round_no in range(args.rounds):
        order = sides if round_no % 2 == 0 else sides[::-1]
        for side, checkout in order:
            for name in names if round_no % 2 == 0 else reversed(names):
                ms = measure(checkout, name, args)
                results.setdefault((side, name), []).append(ms)
                print(
                    f"round {round_no + 1} {side:8} {name:10} {ms:.3f} ms CPU/request", flush=True
                )
    print("\n| side | scenario | ms CPU/request | scenario / plain create, by CPU (rounds) |")
    print("|---|---|---:|---|")
    for side, _ in sides:
        ref = results[(side, "ref_create")]
        print(f"| {side} | ref_create | {statistics.median(ref):.3f} | |")
        for name in names[1:]:
            cpu = results[(side, name)]
            ratios = [r / c for r, c in zip(ref, cpu, strict=True)]
            print(
                f"| {side} | {name} | {statistics.median(cpu):.3f} | "
                f"**{statistics.median(ratios):.2f} ×** ({', '.join(f'{x:.2f}' for x in ratios)}) |"
            )
        if "get" in names and "list_page1" in names:
            pairs = zip(results[(side, "list_page1")], results[(side, "get")], strict=True)
            ratios = [page / one for page, one in pairs]
            print(
                f"{side}: a list page of 20 / a GET of one, by CPU: "
                f"**{statistics.median(ratios):.2f} ×** ({', '.join(f'{x:.2f}' for x in ratios)})"
            )
    if len(sides) == 2:
        (a, _), (b, _) = sides
        for name in names:
            ratios = [y / x for x, y in zip(results[(a, name)], results[(b, name)], strict=True)]
            print(
                f"{name} CPU, {b} / {a}: {statistics.median(ratios):.2f} × "
                f"({', '.join(f'{x:.2f}' for x in ratios)})"
            )


if __name__ == "__main__":
    main()
