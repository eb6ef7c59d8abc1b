"""Running the relay in tests: the command in process (:func:`relay_once`), or real
``python -m django orders_outbox_relay`` subprocesses pointed at the test database."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from django.db import connection

from django_orders.models import OutboxEvent
from tests.receiver import Receiver, versions_by_order
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent


def relay_once(publisher: str, *args: str, **options: Any) -> int:
    """``manage.py orders_outbox_relay --once --no-listen --publisher … --publisher-options
    …`` in process; returns the exit status."""
    from django.core.management import call_command

    try:
        call_command(
            "orders_outbox_relay",
            "--once",
            "--no-listen",
            "--publisher",
            publisher,
            "--publisher-options",
            json.dumps(options),
            *args,
        )
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def is_stopped(pid: int) -> bool:
    """Whether process ``pid`` is stopped (``T`` in /proc/<pid>/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] == "T"


def database_env(name: str | None = None) -> dict[str, str]:
    """Environment that points a subprocess at the test database this test uses (or at
    the database ``name`` on the same server; a file path on SQLite)."""
    settings_dict = {**connection.settings_dict, **({"NAME": name} if name else {})}
    if connection.vendor == "postgresql":
        user = quote(settings_dict.get("USER") or "")
        password = settings_dict.get("PASSWORD") or ""
        auth = f"{user}:{quote(password)}@" if password else (f"{user}@" if user else "")
        host = settings_dict.get("HOST") or "127.0.0.1"
        port = settings_dict.get("PORT") or 5432
        return {
            "DB": "postgres",
            "DATABASE_URL": f"postgres://{auth}{host}:{port}/{settings_dict['NAME']}",
        }
    return {"DB": "sqlite", "ORDERS_SQLITE_PATH": str(settings_dict["NAME"])}


def relay_env(receiver: Receiver | None = None, **orders_settings: Any) -> dict[str, str]:
    env = {
        **os.environ,
        **database_env(),
        "DJANGO_SETTINGS_MODULE": "tests.relay_settings",
        "PYTHONPATH": str(ROOT),
        "ORDERS_RELAY_SETTINGS": json.dumps(orders_settings),
    }
    if receiver is not None:
        env["ORDERS_TEST_RECEIVER_URL"] = receiver.url
    return env


#: Runs a management command with psycopg (3) made unimportable, so Django falls back to
#: psycopg2: the relay must work with either driver.
PSYCOPG2_ONLY = (
    "import sys; sys.modules['psycopg'] = None; "
    "from django.core.management import execute_from_command_line; "
    "execute_from_command_line(sys.argv)"
)


class RelayProcess:
    """``python -m django orders_outbox_relay`` in a subprocess, output in a file.

    ``driver="psycopg2"`` hides psycopg 3 from the subprocess.
    """

    def __init__(
        self, log_path: Path, env: dict[str, str], *args: str, driver: str = "default"
    ) -> None:
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in wait()/kill()
        runner = ["-c", PSYCOPG2_ONLY] if driver == "psycopg2" else ["-m", "django"]
        self.proc = subprocess.Popen(
            [
                sys.executable,
                *runner,
                "orders_outbox_relay",
                "--publisher",
                "tests.relay_publishers.ReceiverPublisher",
                *args,
            ],
            env=env,
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_started(self, timeout: float = 20) -> None:
        wait_until(
            lambda: "Outbox relay started" in self.output() or self.proc.poll() is not None,
            timeout,
            "relay start",
        )
        assert self.proc.poll() is None, self.output()

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 30) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is not None:
                self._log.close()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._log.close()


@contextlib.contextmanager
def relays(
    log_dir: Path, count: int, env: dict[str, str], *args: str, driver: str = "default"
) -> Iterator[list[RelayProcess]]:
    """Start ``count`` relays; kill whatever is still running on the way out."""
    started = [
        RelayProcess(log_dir / f"relay-{i}.log", env, *args, driver=driver) for i in range(count)
    ]
    try:
        yield started
    finally:
        for relay in started:
            if relay.proc.poll() is None:
                relay.kill()
            else:
                relay._log.close()


def all_ids() -> set[str]:
    """The ids of every outbox event, as strings."""
    return {str(pk) for pk in OutboxEvent.objects.values_list("id", flat=True)}


def all_published(running: list[RelayProcess], timeout: float) -> None:
    """Wait until every event is published, failing with the relays' logs should one
    exit or the time run out."""

    def done() -> bool:
        for relay in running:
            assert relay.proc.poll() is None, relay.output()[-3000:]
        return not OutboxEvent.objects.exclude(status="published").exists()

    try:
        wait_until(done, timeout, "every event published")
    except AssertionError as exc:
        rest = list(
            OutboxEvent.objects.exclude(status="published").values_list(
                "status", "attempts", "available_at", "leased_until", "last_error"
            )[:5]
        )
        logs = "\n".join(
            "\n".join(line for line in relay.output().splitlines() if " DEBUG " not in line)[-3000:]
            for relay in running
        )
        raise AssertionError(f"{exc}\nnot published: {rest}\n{logs}") from None


def assert_in_version_order(events: list[dict[str, Any]]) -> None:
    """Each order's events, as a consumer received them, in version order."""
    for order, versions in versions_by_order(events).items():
        assert versions == sorted(versions), f"order {order} arrived as {versions}"
