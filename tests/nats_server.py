"""NATS for the tests: the machine's server with JetStream (127.0.0.1:4222,
``ORDERS_TEST_NATS_URL`` overrides; ``scripts/ensure-services.sh nats`` starts one), or a
``nats-server -js`` of a test's own, which it may kill and start again on the same port and
store directory (file storage: what was acknowledged survives).

nats-py is asyncio only; tests drive it with :func:`run` (one ``asyncio.run`` per call).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.kafka_broker import free_port
from tests.waiting import wait_until

NATS_URL = os.environ.get("ORDERS_TEST_NATS_URL", "nats://127.0.0.1:4222")

T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


async def with_jetstream(url: str, use: Callable[[Any, Any], Awaitable[T]]) -> T:
    """Connect to ``url``, call ``use(connection, jetstream_manager)``, disconnect."""
    import nats

    connection = await nats.connect(url, connect_timeout=2, allow_reconnect=False)
    try:
        return await use(connection, connection.jetstream())
    finally:
        await connection.close()


def machine_nats() -> str:
    """The machine's NATS URL; the test is skipped, saying why, when it does not answer
    or has no JetStream."""
    pytest.importorskip("nats")

    async def account(connection: Any, jetstream: Any) -> Any:
        return await jetstream.account_info()

    try:
        run(with_jetstream(NATS_URL, account))
    except Exception as exc:
        pytest.skip(
            f"no NATS server with JetStream at {NATS_URL} ({type(exc).__name__}: {exc}); "
            "`scripts/ensure-services.sh nats` starts one"
        )
    return NATS_URL


def create_stream(url: str, subjects: list[str], name: str | None = None) -> str:
    """A file-storage stream capturing ``subjects``; returns its name."""
    name = name or f"TEST_{uuid.uuid4().hex[:12]}"

    async def create(connection: Any, jetstream: Any) -> None:
        await jetstream.add_stream(name=name, subjects=subjects, storage="file")

    run(with_jetstream(url, create))
    return name


def delete_stream(url: str, name: str) -> None:
    async def delete(connection: Any, jetstream: Any) -> None:
        await jetstream.delete_stream(name)

    with contextlib.suppress(Exception):
        run(with_jetstream(url, delete))


def stream_messages(url: str, name: str) -> list[Any]:
    """Every message the stream holds, in stream order (``RawStreamMsg``: ``subject``,
    ``data``, ``headers``)."""

    async def read(connection: Any, jetstream: Any) -> list[Any]:
        info = await jetstream.stream_info(name)
        state = info.state
        return [
            await jetstream.get_msg(name, seq)
            for seq in range(state.first_seq, state.last_seq + 1)
            if state.messages
        ]

    return run(with_jetstream(url, read))


class NatsServer:
    """A ``nats-server -js`` of the test's own, on a free port, with its store in a
    temporary directory kept across :meth:`kill` and :meth:`start`; ``jetstream=False``: a
    plain NATS server (nothing answers JetStream's API); ``websocket=True``: it also takes
    WebSocket clients, without TLS, at ``ws_url``; ``tls``: (certificate, key) files with
    which it offers TLS, plain clients still welcome (``allow_non_tls``)."""

    def __init__(
        self,
        *,
        jetstream: bool = True,
        websocket: bool = False,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        binary = shutil.which("nats-server")
        if binary is None:
            pytest.skip("nats-server is not installed (apt-get install nats-server)")
        self.binary = binary
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.store = Path(tempfile.mkdtemp(prefix="orders-nats-"))
        self.jetstream = jetstream
        self.ws_port = free_port() if websocket else None
        self.ws_url = f"ws://127.0.0.1:{self.ws_port}"
        self.tls = tls
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        store = ["-js", "-sd", str(self.store / "jetstream")] if self.jetstream else []
        config = []  # what no command-line flag sets
        if self.ws_port is not None:
            config.append(f'websocket {{ listen: "127.0.0.1:{self.ws_port}", no_tls: true }}')
        if self.tls is not None:
            cert, key = self.tls
            config.append(f'tls {{ cert_file: "{cert}", key_file: "{key}" }}')
            config.append("allow_non_tls: true")
        if config:
            (self.store / "server.conf").write_text("\n".join(config) + "\n")
            store += ["-c", str(self.store / "server.conf")]
        with open(self.store / "server.log", "ab") as log:
            self.proc = subprocess.Popen(
                [
                    self.binary,
                    "-a",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    *store,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until(self._ready, 20, f"nats-server on {self.port}")

    def _ready(self) -> bool:
        assert self.proc is not None
        assert self.proc.poll() is None, (self.store / "server.log").read_text()
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", self.port)) != 0:
                return False
        return "Server is ready" in (self.store / "server.log").read_text()

    def pause(self) -> None:
        """SIGSTOP: connections stay open, the server reads and answers nothing (once
        this returns: the signal takes effect asynchronously)."""
        from tests.relay_runs import is_stopped

        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)
        pid = self.proc.pid
        wait_until(lambda: is_stopped(pid), 10, f"nats-server {pid} stopped")

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.store, ignore_errors=True)
