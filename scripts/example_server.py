"""The example project on a free port with a throwaway SQLite database, for tools that
need the real API: the Swagger UI screenshot, ``make contract``, the code-generator tests.

Usage as a library: ``with serve() as base_url: ...``; as a script it serves until
interrupted and prints the base URL.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "example_project"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(url: str, timeout: float = 60.0) -> None:
    """Poll ``url`` until it answers 200, for at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")
        time.sleep(0.2)


@contextlib.contextmanager
def serve(python: str = sys.executable, *, debug: bool = True) -> Iterator[str]:
    """Migrate a new SQLite database, serve the example project, yield its base URL.

    ``debug=False`` serves it as in production: Django's own error pages are the
    project's handlers (problem+json), and no static files (Swagger UI's assets).
    """
    port = free_port()
    with tempfile.TemporaryDirectory() as scratch:
        env = {
            **os.environ,
            "SQLITE_PATH": str(Path(scratch) / "db.sqlite3"),
            "DEBUG": "1" if debug else "0",
        }
        # The example project's settings on its own database, not a test run's.
        for name in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "DB"):
            env.pop(name, None)
        manage = [python, "manage.py"]
        subprocess.run(
            [*manage, "migrate", "--noinput"], cwd=EXAMPLE, env=env, check=True, capture_output=True
        )
        server = subprocess.Popen(
            [*manage, "runserver", "--noreload", f"127.0.0.1:{port}"],
            cwd=EXAMPLE,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_for(f"{base}/schema/")
            yield base
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    with serve() as base_url:
        print(base_url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)
