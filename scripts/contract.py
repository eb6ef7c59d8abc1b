"""``make contract``: schemathesis, every check plus the stateful links, against the example
project's served schema (docs/guide/openapi.md, "The contract run").

Serves the example project on a free port with a throwaway SQLite database (DEBUG off, so
even Django's own 404 is the project's problem+json), then runs schemathesis with
``contract/schemathesis.toml`` for at most ``--max-time`` seconds. Exits with schemathesis's
status: 0 when no check failed. Each failure is printed with the curl command that
reproduces it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from example_server import ROOT, serve

BIN = Path(sys.executable).parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-time", type=int, default=150, help="seconds (default 150)")
    parser.add_argument("--max-examples", type=int, default=40, help="per operation")
    # One worker: hypothesis parses lambda sources with ast.parse, which CPython 3.11.7
    # can fail from two threads at once ("AST constructor recursion depth mismatch").
    parser.add_argument("--workers", default="1")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    with serve(debug=False) as base:
        command = [
            str(BIN / "schemathesis"),
            "--config-file",
            str(ROOT / "contract" / "schemathesis.toml"),
            "run",
            f"{base}/schema/?format=json",
            "--url",
            base,
            "--checks",
            "all",
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--max-examples",
            str(args.max_examples),
            "--max-time",
            str(args.max_time),
            "--workers",
            args.workers,
            "--generation-database",
            "none",
            "--no-color",
        ]
        if args.seed is not None:
            command += ["--seed", str(args.seed)]
        return subprocess.run(command, cwd=ROOT, check=False).returncode


if __name__ == "__main__":
    raise SystemExit(main())
