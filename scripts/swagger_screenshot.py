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
import subprocess

from example_server import ROOT, serve


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
    with serve() as base:
        # Deep-linked to the create operation, shown expanded with its example.
        url = f"{base}/docs/#/orders/orders_create"
        dom = headless(browser, "--dump-dom", url).stdout
        if "opblock-summary-path" not in dom:
            raise SystemExit("Swagger UI did not render its operations.")
        if 'class="btn authorize' in dom:
            raise SystemExit("Swagger UI shows an Authorize button.")
        if 'data-path="/schema/"' in dom:
            raise SystemExit("Swagger UI lists /schema/ as an operation.")
        headless(browser, f"--screenshot={args.out}", url)
    print(f"Saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
