#!/usr/bin/env bash
# A packager's view of the sdist: unpack it alone, install it with its `test` dependency
# group, and run its own test suite on SQLite from the unpacked tree.
# Usage: sdist_check.sh SDIST [pytest args]
set -euo pipefail
sdist=$(readlink -f "$1"); shift
python=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar -xzf "$sdist" -C "$work"
cd "$work"/django_orders-*/
"$python" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --upgrade "pip>=25.1"
"$work/venv/bin/python" -m pip install --quiet . --group test
DB=sqlite "$work/venv/bin/python" -m pytest -q "$@"
