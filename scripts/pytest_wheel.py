"""Run pytest against the installed django-orders, not the checkout (used by tox).

The checkout is appended to the end of sys.path, so ``tests`` (settings, urls) imports
from it while ``django_orders`` comes from site-packages, where tox installed the wheel.
"""

import sys
from pathlib import Path

sys.path[:] = [p for p in sys.path if p not in ("", str(Path.cwd()))]
sys.path.append(str(Path(__file__).resolve().parent.parent))

import pytest  # noqa: E402

sys.exit(pytest.main(["--import-mode=append", *sys.argv[1:]]))
