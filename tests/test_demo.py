"""``make demo`` (README, "Try it: two commands"), run as a newcomer runs it: the printed
commands work every time they are pasted, in the first run and in a later one on the same
database; Ctrl+C ends it cleanly; a taken ``DEMO_PORT`` is refused before anything starts.

Ctrl+C is what the terminal does with it: SIGINT to the foreground process group (make,
the script, the server). Each run has a database and a port of its own, so a developer's
own ``make demo`` is left alone.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.relay_runs import ROOT
from tests.waiting import wait_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not all(shutil.which(tool) for tool in ("make", "bash", "curl")),
        reason="needs make, bash and curl",
    ),
]
# The example project's own requirements (make test installs them; tox does not).
pytest.importorskip("drf_spectacular_sidecar")

STARTED = "Quit the server with CONTROL-C."
RELAY_STARTED = "Outbox relay started"


class Demo:
    """``make demo`` in a process group of its own, its output collected by a thread."""

    def __init__(self, port: int, database: Path) -> None:
        self.port = port
        self.database = database
        env = {**os.environ, "DEMO_PORT": str(port), "SQLITE_PATH": str(database)}
        # The example project's settings on the demo's own SQLite file, as a newcomer has
        # them: not the test run's settings module nor its database.
        for name in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "DB"):
            env.pop(name, None)
        self.process = subprocess.Popen(
            # The running interpreter's environment, not a make-built .venv (tox).
            [
                *("make", "--no-print-directory", "-o", ".venv/.installed-demo", "demo"),
                f"BIN={Path(sys.executable).parent}",
            ],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_until_serving(self) -> None:
        def serving() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"make demo ended early:\n{self.output}")
            if STARTED not in self.output or RELAY_STARTED not in self.output:
                return False
            with socket.socket() as probe:
                return probe.connect_ex(("127.0.0.1", self.port)) == 0

        wait_until(serving, timeout=60, message="make demo serving")

    def printed_commands(self) -> str:
        """The block the demo tells the user to paste, as printed."""
        text = self.output
        start = text.index("\n", text.index("Try it in another terminal"))
        return text[start : text.index("  Outbox backlog:")]

    def ctrl_c(self) -> int:
        os.killpg(self.process.pid, signal.SIGINT)
        status = self.process.wait(timeout=60)
        self.reader.join(timeout=10)
        return status

    def stop(self) -> None:
        """Clean-up after a failed test: stop whatever is left, the relay included."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self.reader.join(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()
        lock = Path(f"{self.database}-relay.lock")
        if lock.exists() and relay_lock_held(lock):
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(lock.read_text().strip()), signal.SIGKILL)


def relay_lock_held(lock: Path) -> bool:
    with lock.open("a") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return False


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def demo(port: int, database: Path) -> Iterator[Demo]:
    running = Demo(port, database)
    try:
        yield running
    finally:
        running.stop()


def paste(commands: str) -> str:
    """Run the printed block as a shell runs it pasted: one line after the other."""
    result = subprocess.run(
        ["bash"],
        input=commands,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout
    return result.stdout


#: An answer as ``curl -si`` prints it: status line, headers, blank line, the one-line body
#: (which ends where the next answer starts when nothing printed a newline after it).
ANSWER = re.compile(
    r"HTTP/[\d.]+ (\d{3})[^\n]*\n(.*?)\r?\n\r?\n(.*?)(?=HTTP/[\d.]+ \d{3} |\n|$)", re.S
)


def answers(output: str) -> list[tuple[int, str | None, str]]:
    """(status, Idempotent-Replayed, body) of each HTTP answer in ``output``, in order."""
    found = []
    for match in ANSWER.finditer(output):
        replayed = re.search(r"^Idempotent-Replayed: (\S+)", match.group(2), re.M | re.I)
        found.append((int(match.group(1)), replayed.group(1) if replayed else None, match.group(3)))
    return found


def check_paste(output: str) -> str:
    """The statuses of one paste; returns the id of the order it made."""
    got = answers(output)
    assert [(status, replayed) for status, replayed, _ in got] == [
        (201, None),  # create
        (201, "true"),  # the same request again: replayed
        (200, None),  # read
        (422, None),  # confirm above the customer's credit limit: the shop's rule refuses
        (200, None),  # confirm, If-Match the ETag read
        (200, None),  # close, If-Match the ETag of the confirm
        (200, None),  # list
        (200, None),  # the project's own endpoint: set the customer's credit limit
    ], output
    created, replayed = got[0][2], got[1][2]
    assert created == replayed, output  # the replay is the same order, byte for byte
    order_id = re.search(r'"id":"([0-9a-f-]{36})"', created)
    assert order_id, output
    assert '"customerId":1' in created, output  # the host field
    assert '"code":"credit_limit_exceeded"' in got[3][2], output
    assert '"status":"closed"' in got[5][2], output
    assert got[7][2] == '{"customerId":1,"creditLimitCents":100000}', output
    return order_id.group(1)


def test_printed_commands_work_in_every_paste_and_run_and_ctrl_c_ends_cleanly() -> None:
    with tempfile.TemporaryDirectory(prefix="orders-demo-") as tmp:
        database = Path(tmp) / "demo.sqlite3"
        orders = []
        for _run in range(2):  # the second run finds the first one's database
            port = free_port()
            with demo(port, database) as running:
                running.wait_until_serving()
                commands = running.printed_commands()
                assert f"http://127.0.0.1:{port}/orders" in commands
                for _paste in range(2):
                    orders.append(check_paste(paste(commands)))
                # The relay prints the events: the project's own among them, each with the
                # request's correlation id.
                wait_until(
                    lambda r=running: (
                        r.output.count('"type":"com.example.customer.credit_limit_changed"') >= 2
                    ),
                    timeout=30,
                    message="the host events in the relay's log",
                )
                assert '"correlationid":"demo-limit"' in running.output

                status = running.ctrl_c()

                output = running.output
                # make dies of the SIGINT the terminal sent it, as any program stopped
                # with Ctrl+C; the script under it ended 0, so make reports no error.
                assert status == -signal.SIGINT, output
                assert "make: ***" not in output, output
                assert "Error 130" not in output, output
                # The relay was stopped by the script, with one SIGTERM, and said so
                # without the advice meant for an operator.
                assert "Received SIGTERM" in output, output
                assert "send it again" not in output, output
                assert "Outbox relay stopped" in output.splitlines()[-1], output
                assert not relay_lock_held(Path(f"{database}-relay.lock"))
        assert len(set(orders)) == 4  # each paste made an order of its own


def test_a_taken_port_is_refused_before_anything_starts() -> None:
    with (
        tempfile.TemporaryDirectory(prefix="orders-demo-") as tmp,
        socket.socket() as taken,
    ):
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        database = Path(tmp) / "demo.sqlite3"
        with demo(port, database) as running:
            status = running.process.wait(timeout=60)
            running.reader.join(timeout=10)
            output = running.output

        assert status == 2, output  # make's status for a failed recipe (the script: 1)
        assert f"Port {port} on 127.0.0.1 is already in use" in output, output
        assert f"DEMO_PORT={port + 1} make demo" in output, output
        assert RELAY_STARTED not in output, output
        assert not database.exists()  # not even migrated
