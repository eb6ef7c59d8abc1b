"""One relay at a time where the database cannot skip locked rows (SQLite).

Without ``SELECT … FOR UPDATE SKIP LOCKED`` two relays could claim the same events, so a
relay on such a database takes an exclusive, non-blocking ``flock()`` on a file next to
the database (``<database>-relay.lock``, beside SQLite's own ``-wal`` and ``-shm``) and
keeps it while it runs. A second relay finds the lock taken and refuses to start with a
clear message. The kernel drops the lock when the process ends in any way, ``SIGKILL``
included, so a crashed relay never leaves a stale lock behind — and, holding the lock, a
relay knows it is alone and may clear leases left by a crashed predecessor at once
instead of waiting them out.

A lock file rather than a row in the database: a row would need a heartbeat and a timeout
to tell a crashed holder from a live one; ``flock()`` knows. It also only works for
relays on the same machine — which is the only way to share a SQLite file safely anyway.
"""

from __future__ import annotations

import contextlib
import os
from typing import IO

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


class RelayAlreadyRunning(Exception):
    """Another relay holds the lock of this database."""


class RelayLock:
    """An exclusive lock file; :meth:`acquire` raises :class:`RelayAlreadyRunning`."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._file: IO[str] | None = None

    @classmethod
    def for_database(cls, database_name: str) -> RelayLock | None:
        """The lock of a SQLite database file; ``None`` for an in-memory database."""
        name = str(database_name)
        if not name or name == ":memory:" or "mode=memory" in name:
            return None
        return cls(f"{os.path.abspath(name)}-relay.lock")

    def acquire(self) -> None:
        if fcntl is None:  # pragma: no cover - Windows
            raise RelayAlreadyRunning(
                "Cannot make sure this is the only relay on this platform (no fcntl.flock); "
                "use PostgreSQL to run the relay here."
            )
        handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held while running
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise RelayAlreadyRunning(
                f"Another outbox relay is already running on this database (lock file "
                f"{self.path}, held by pid {holder}). This database has no SKIP LOCKED, so "
                "only one relay may run at a time; run several relays on PostgreSQL."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._file = handle

    def release(self) -> None:
        handle, self._file = self._file, None
        if handle is not None:
            with contextlib.suppress(OSError):
                handle.close()  # closing the file drops the flock
