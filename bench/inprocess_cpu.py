#!/usr/bin/env python
"""The CPU a request costs in-process, without a server or load generator, side by side.

    BENCH_DATABASE_URL=… .venv/bin/python bench/inprocess_cpu.py \\
        --side main=<checkout of main> --side branch=. --rounds 5

Each side is a checkout whose ``django_orders`` and ``bench/benchproject`` a child Python
(this one) imports; its database is ``BENCH_DATABASE_URL`` (migrated beforehand, e.g. by
``bench/interleave_api.py``). A child sends ``--warm`` requests through Django's test
client, then ``--requests`` more, and reports the process CPU (``time.process_time()``:
every thread, user + system) of those per request, for the plain DRF create
(``/ref/create``) and the idempotent create (``/orders``, a new key each time). Sides and
paths alternate within every round; medians over rounds. No network, no gunicorn, no
``wrk``: what is left is the Python the request runs plus the driver's side of its round
trips, which a loaded machine disturbs less than a server's rate.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

PATHS = {"ref_create": ("/ref/create", "bench-refcreate"), "create": ("/orders", "bench-create")}

CHILD = """
import json, os, sys, time, uuid
import django
django.setup()
from django.test import Client
path, tenant, warm, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
client = Client()
body = '{"totalCents": 1234, "currency": "EUR", "metadata": {"source": "bench"}}'
run = uuid.uuid4().hex
def one(i):
    response = client.post(path, body, content_type="application/json",
                           HTTP_X_TENANT_ID=tenant, HTTP_IDEMPOTENCY_KEY=f"cpu-{run}-{i}",
                           SERVER_NAME="localhost")
    assert response.status_code == 201, (response.status_code, response.content)
for i in range(warm):
    one(i)
start = time.process_time()
for i in range(warm, warm + count):
    one(i)
print(json.dumps((time.process_time() - start) / count * 1000))
"""


def measure(checkout: Path, name: str, args: argparse.Namespace) -> float:
    path, tenant = PATHS[name]
    env = dict(os.environ)
    env["PYTHONPATH"] = f"{checkout / 'bench'}{os.pathsep}{checkout}"
    env["DJANGO_SETTINGS_MODULE"] = "benchproject.settings"
    out = subprocess.run(
        [sys.executable, "-c", CHILD, path, tenant, str(args.warm), str(args.requests)],
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
    args = parser.parse_args()
    sides = [(spec.partition("=")[0], Path(spec.partition("=")[2]).resolve()) for spec in args.side]
    results: dict[tuple[str, str], list[float]] = {}
    for round_no in range(args.rounds):
        order = sides if round_no % 2 == 0 else sides[::-1]
        for side, checkout in order:
            for name in PATHS if round_no % 2 == 0 else reversed(PATHS):
                ms = measure(checkout, name, args)
                results.setdefault((side, name), []).append(ms)
                print(
                    f"round {round_no + 1} {side:8} {name:10} {ms:.3f} ms CPU/request", flush=True
                )
    print("\n| side | plain DRF create, ms | create, ms | create / plain, by CPU (rounds) |")
    print("|---|---:|---:|---|")
    for side, _ in sides:
        ref, create = results[(side, "ref_create")], results[(side, "create")]
        ratios = [r / c for r, c in zip(ref, create, strict=True)]
        print(
            f"| {side} | {statistics.median(ref):.3f} | {statistics.median(create):.3f} | "
            f"**{statistics.median(ratios):.2f} ×** ({', '.join(f'{x:.2f}' for x in ratios)}) |"
        )
    if len(sides) == 2:
        (a, _), (b, _) = sides
        ratios = [
            y / x for x, y in zip(results[(a, "create")], results[(b, "create")], strict=True)
        ]
        print(
            f"\ncreate CPU, {b} / {a}: {statistics.median(ratios):.2f} × "
            f"({', '.join(f'{x:.2f}' for x in ratios)})"
        )


if __name__ == "__main__":
    main()
