#!/usr/bin/env bash
# A new host project: startproject, install the built wheel, the README's two edits,
# migrate, check (with warnings as failures) and one request. Usage: host_check.sh WHEEL
set -euo pipefail
wheel=$(readlink -f "$1")
python=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
"$python" -m venv venv
venv/bin/python -m pip install --quiet "$wheel"
venv/bin/django-admin startproject host .
# The two edits, exactly as the README shows them.
cat >> host/settings.py <<'PY'

INSTALLED_APPS += ["rest_framework", "django_orders"]
PY
cat >> host/urls.py <<'PY'

from django.urls import include
urlpatterns += [path("", include("django_orders.urls"))]
PY
venv/bin/python manage.py migrate --no-input >/dev/null
out=$(venv/bin/python manage.py check 2>&1)
echo "$out"
echo "$out" | grep -q "System check identified no issues (0 silenced)." || { echo "host check: warnings or errors" >&2; exit 1; }
venv/bin/python - <<'PY'
import os, django
os.environ["DJANGO_SETTINGS_MODULE"] = "host.settings"
django.setup()
from django.test import Client
from django.test.utils import setup_test_environment
setup_test_environment()
c = Client()
r = c.get("/orders")
assert r.status_code == 400 and r.json()["code"] == "missing_tenant", (r.status_code, r.content)
r = c.get("/admin/login/")
assert r.status_code == 200, r.status_code  # the host's own URLs are untouched
print("host check ok: /orders -> 400 missing_tenant, /admin/ untouched")
PY
