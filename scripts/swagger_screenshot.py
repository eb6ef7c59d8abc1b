"""Start the example project and save a screenshot of its Swagger UI (docs/img/swagger-ui.png).

Usage: .venv/bin/python scripts/swagger_screenshot.py [--out docs/img/swagger-ui.png]

Needs a headless Chromium: Debian's (``apt-get install chromium``) or ``CHROMIUM=/path``.
The example project runs on a free port with a throwaway SQLite database. Before the
screenshot, the rendered page is checked for what docs/guide/openapi.md promises: no
Authorize button (the demo configures no authentication) and no ``/schema/`` operation.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "example_project"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"{url} did not answer within {timeout:.0f} s") from None
            time.sleep(0.2)


def chromium() -> str:
    for candidate in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if candidate and shutil.which(candidate):
            return str(shutil.which(candidate))
    raise SystemExit("No Chromium found: apt-get install chromium, or set CHROMIUM=/path.")


def headless(browser: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            browser,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1280,2000",
            # Swagger UI renders in JavaScript: let it fetch the schema and draw.
            "--virtual-time-budget=20000",
            *args,
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "img" / "swagger-ui.png"))
    args = parser.parse_args()
    browser = chromium()
    port = free_port()
    with tempfile.TemporaryDirectory() as scratch:
        env = {**os.environ, "SQLITE_PATH": str(Path(scratch) / "db.sqlite3"), "DEBUG": "1"}
        env.pop("DATABASE_URL", None)
        manage = [sys.executable, "manage.py"]
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
            # Deep-linked to the create operation, shown expanded with its example.
            url = f"http://127.0.0.1:{port}/docs/#/orders/orders_create"
            wait_for(f"http://127.0.0.1:{port}/schema/")
            dom = headless(browser, "--dump-dom", url).stdout
            if "opblock-summary-path" not in dom:
                raise SystemExit("Swagger UI did not render its operations.")
            if 'class="btn authorize' in dom:
                raise SystemExit("Swagger UI shows an Authorize button.")
            if 'data-path="/schema/"' in dom:
                raise SystemExit("Swagger UI lists /schema/ as an operation.")
            headless(browser, f"--screenshot={args.out}", url)
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"Saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
