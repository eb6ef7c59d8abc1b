"""Check what the built distributions hold. Usage: check_dist.py DIST_DIR

The wheel holds the package alone: migrations, templates and ``py.typed``, no tests,
example, benchmarks or docs. The sdist holds what its own tests and docs need, so a
packager can run ``pytest``, ``tox`` and ``mkdocs build`` from it.
"""

import sys
import tarfile
import zipfile
from pathlib import Path

WHEEL_REQUIRED = [
    "django_orders/py.typed",
    "django_orders/migrations/0001_initial.py",
    "django_orders/migrations/_operations.py",
    "django_orders/templates/admin/django_orders/typed_filter.html",
]
WHEEL_FORBIDDEN = ("tests/", "example_project/", "bench/", "docs/", "scripts/")

SDIST_REQUIRED = [
    *WHEEL_REQUIRED,
    "pyproject.toml",  # the dependency groups the tests install
    "tox.ini",
    "Makefile",
    "mkdocs.yml",
    "README.md",
    "CHANGELOG.md",
    "LICENSE",
    "tests/conftest.py",
    "tests/settings.py",
    "tests/hostapp/views.py",
    "scripts/pytest_wheel.py",
    "scripts/ensure-services.sh",
    "docs/index.md",
    "CONTRIBUTING.md",
    "SECURITY.md",
    "example_project/manage.py",
]
SDIST_FORBIDDEN = (".github/", ".ci/", "bench/", "site/", "dist/", ".venv/")
FORBIDDEN_SUFFIXES = (".pyc", ".sqlite3")


def only(dist_dir: Path, pattern: str) -> Path:
    found = sorted(dist_dir.glob(pattern))
    if len(found) != 1:
        sys.exit(f"dist check failed: expected one {pattern} in {dist_dir}, found {found}")
    return found[0]


def check(kind: str, names: list[str], required: list[str], forbidden: tuple[str, ...]) -> None:
    missing = [name for name in required if name not in names]
    bad = [n for n in names if n.startswith(forbidden) or n.endswith(FORBIDDEN_SUFFIXES)]
    if missing or bad:
        sys.exit(f"{kind} check failed: missing={missing} forbidden={bad}")


def main() -> None:
    dist_dir = Path(sys.argv[1])
    wheel = zipfile.ZipFile(only(dist_dir, "*.whl")).namelist()
    check("wheel", wheel, WHEEL_REQUIRED, WHEEL_FORBIDDEN)
    with tarfile.open(only(dist_dir, "*.tar.gz")) as sdist:
        # Members are "<name>-<version>/<path>": drop the top directory.
        sdist_names = [m.name.partition("/")[2] for m in sdist.getmembers() if m.isfile()]
    check("sdist", sdist_names, SDIST_REQUIRED, SDIST_FORBIDDEN)
    print(
        f"wheel ok: {len(wheel)} files, package only; "
        f"sdist ok: {len(sdist_names)} files, with tests, tox.ini, docs and scripts"
    )


if __name__ == "__main__":
    main()
