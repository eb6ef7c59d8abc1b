"""Waiting between batches: for a ``NOTIFY``, the next poll, or a stop request.

The writing transaction sends ``NOTIFY django_orders_outbox``
(:mod:`django_orders.outbox.recording`); PostgreSQL delivers it when that transaction
commits. The relay ``LISTEN``s on a dedicated connection of its own (never one from a
pool, never the one it claims with) and wakes the moment a notification arrives. A
notification is a hint, not a guarantee — one sent while the listening connection was
down is gone — so the relay still polls every ``OUTBOX_POLL_INTERVAL``.

Works with psycopg 3 and psycopg2, whichever Django uses: both expose the socket
(``fileno()``), so one ``select()`` waits on it and on a self-pipe that a signal handler
(or :meth:`Wakeup.wake`) writes to.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
from typing import Any

from django.db import connections

from django_orders.outbox.recording import NOTIFY_CHANNEL

logger = logging.getLogger("django_orders.relay")


class Wakeup:
    """Sleeps until a notification, a wake-up call or the timeout, whichever comes first.

    ``listen_using`` names a PostgreSQL database alias to ``LISTEN`` on; ``None`` polls.
    """

    def __init__(self, listen_using: str | None = None) -> None:
        self.listen_using = listen_using
        self._conn: Any = None
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)
        self._warned = False

    @property
    def listening(self) -> bool:
        return self._conn is not None

    def wake(self) -> None:
        """Make the current or next :meth:`wait` return at once. Safe in a signal handler."""
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._write_fd, b"\0")

    def start(self) -> None:
        """Open the listening connection (if listening); failure degrades to polling."""
        if self.listen_using is not None and self._conn is None:
            self._connect()

    def wait(self, timeout: float) -> str:
        """Block up to ``timeout`` seconds; returns ``"notify"``, ``"wake"``, ``"timeout"``
        or ``"reconnected"``."""
        if self._conn is not None and self._drain():
            return "notify"
        if self.listen_using is not None and self._conn is None:
            # Not listening (the connection was lost, or never opened): connect again now,
            # not a poll interval later. Notifications sent meanwhile are gone, so after a
            # reconnect return at once: the caller looks for due events before it sleeps.
            self._connect()
            if self._conn is not None:
                return "reconnected"
        fds = [self._read_fd]
        if self._conn is not None:
            fds.append(self._conn.fileno())
        ready, _, _ = select.select(fds, [], [], max(0.0, timeout))
        if self._read_fd in ready:
            with contextlib.suppress(BlockingIOError):
                while os.read(self._read_fd, 4096):
                    pass
            return "wake"
        if self._conn is not None and self._drain():
            return "notify"
        return "timeout"

    def close(self) -> None:
        self._disconnect()
        for fd in (self._read_fd, self._write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _connect(self) -> None:
        wrapper = connections[self.listen_using or "default"]
        try:
            # A connection of our own, straight from the driver: a pooled connection would
            # go back to the pool still listening, and the relay's claim connection is
            # closed and reopened by close_old_connections().
            conn = wrapper.Database.connect(  # type: ignore[attr-defined]
                **wrapper.get_connection_params()
            )
            conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute(f"LISTEN {NOTIFY_CHANNEL}")
        except Exception as exc:
            if not self._warned:
                logger.warning(
                    "LISTEN %s failed, polling only until it works: %s", NOTIFY_CHANNEL, exc
                )
                self._warned = True
            return
        if self._warned:
            logger.info("LISTEN %s works again", NOTIFY_CHANNEL)
        self._warned = False
        self._conn = conn

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _drain(self) -> bool:
        """Consume every notification already received; whether there was any."""
        conn = self._conn
        try:
            if hasattr(conn, "pgconn"):  # psycopg 3: the libpq connection underneath
                pgconn = conn.pgconn
                pgconn.consume_input()
                received = False
                while pgconn.notifies() is not None:
                    received = True
                return received
            conn.poll()  # psycopg2
            received = bool(conn.notifies)
            del conn.notifies[:]
            return received
        except Exception as exc:
            # The server went away: reconnect at the next wait, poll meanwhile.
            logger.warning("LISTEN connection lost, reconnecting: %s", exc)
            self._warned = True  # the reconnect says "works again"; a failed one stays quiet
            self._disconnect()
            return False
