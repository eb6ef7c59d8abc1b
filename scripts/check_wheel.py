"""Check what the built wheel holds: migrations and py.typed, no tests or example."""

import sys
import zipfile

names = zipfile.ZipFile(sys.argv[1]).namelist()
required = [
    "django_orders/py.typed",
    "django_orders/migrations/0001_initial.py",
    "django_orders/migrations/_operations.py",
    "django_orders/templates/admin/django_orders/typed_filter.html",
]
missing = [name for name in required if name not in names]
forbidden = [n for n in names if n.startswith(("tests/", "example_project/", "bench/", "docs/"))]
if missing or forbidden:
    sys.exit(f"wheel check failed: missing={missing} forbidden={forbidden}")
print(f"wheel ok: {len(names)} files, migrations and py.typed present, no tests/example")
