"""A deadline for one whole send, kept by a watchdog thread that interrupts blocking I/O.

A socket timeout (http.client's ``timeout``, redis-py's ``socket_timeout``) bounds each
read or write, not an operation: a peer that answers one byte at a time, each byte within
the timeout, holds a send for as long as it likes (issue 8, "a receiver that never finishes
its answer"), and the relay renews the lease of the events in hand all that while. So a
publisher runs each send inside :meth:`Watchdog.guard`: should the send still be running
at its deadline, the watchdog calls the guard's ``interrupt`` (shuts the socket down), the
blocked read or write returns at once, and the publisher, seeing :attr:`Guard.expired`,
reports a timeout and discards the connection.

The interrupt runs on the watchdog's thread while the sending thread is blocked, which is
why it only shuts sockets down: ``shutdown(2)`` is safe from any thread and wakes every
thread blocked on the socket (a ``close()`` would not). After the deadline the interrupt is
repeated every :data:`REPEAT_INTERVAL` until the send gives up: a connection being opened
cannot be interrupted, but the socket it yields is caught by the next round.
"""

from __future__ import annotations

import contextlib
import logging
import math
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType

logger = logging.getLogger(__name__)

#: Seconds between two interrupts of a send still running past its deadline.
REPEAT_INTERVAL = 0.05


def time_left(deadline: float) -> float:
    """Seconds until ``deadline`` (a ``time.monotonic()`` value), for a socket timeout.

    Raises ``TimeoutError`` when none are left: a socket timeout of 0 would make the
    socket non-blocking instead of failing.
    """
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the deadline has passed")
    return left


class Guard:
    """One guarded send: its deadline, its interrupt, and whether it was interrupted.

    A context manager: entering registers it with its watchdog, leaving unregisters it.
    Once left, the interrupt is never called again, so the send's connection may be
    reused; :attr:`expired` is final then.
    """

    def __init__(self, watchdog: Watchdog, deadline: float, interrupt: Callable[[], None]) -> None:
        self.watchdog = watchdog
        self.deadline = deadline
        self.interrupt = interrupt
        #: Set (by the watchdog's thread) when the deadline passed before the send ended.
        self.expired = False
        self.due = deadline  # when the watchdog acts on it next

    def __enter__(self) -> Guard:
        self.watchdog._add(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.watchdog._remove(self)


class Watchdog:
    """Interrupts the guarded sends still running at their deadline, on one thread.

    The thread starts with the first guard and ends with :meth:`close` (a later guard
    starts it again). It sleeps until the earliest deadline and is woken only when a new
    guard's deadline is earlier than that, so a steady stream of sends costs two lock
    round trips each, not a thread wake-up.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._guards: list[Guard] = []
        self._condition = threading.Condition()
        self._thread: threading.Thread | None = None
        self._wake_at = math.inf

    def guard(self, deadline: float, interrupt: Callable[[], None]) -> Guard:
        """A guard for one send, to be used as a context manager around it."""
        return Guard(self, deadline, interrupt)

    def close(self) -> None:
        """End the thread (after the guarded sends have finished)."""
        with self._condition:
            thread, self._thread = self._thread, None
            self._condition.notify()
        if thread is not None:
            thread.join()

    def _add(self, guard: Guard) -> None:
        with self._condition:
            self._guards.append(guard)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._wake_at = math.inf
                self._thread.start()
            elif guard.due < self._wake_at:
                self._condition.notify()

    def _remove(self, guard: Guard) -> None:
        with self._condition:
            self._guards.remove(guard)

    def _run(self) -> None:
        me = threading.current_thread()
        with self._condition:
            while self._thread is me:
                now = time.monotonic()
                for guard in self._guards:
                    if guard.due <= now:
                        guard.expired = True
                        guard.due = now + REPEAT_INTERVAL
                        # Under the lock: a guard that has been left is never interrupted.
                        try:
                            guard.interrupt()
                        except Exception:  # pragma: no cover - interrupts swallow OSError
                            logger.exception("Interrupting a send past its deadline failed")
                self._wake_at = min((guard.due for guard in self._guards), default=math.inf)
                self._condition.wait(None if self._wake_at == math.inf else self._wake_at - now)


class SocketInterrupt:
    """An interrupt that shuts down the socket it was told to :meth:`watch`.

    It works on a duplicate of the socket's descriptor, closed by :meth:`release` (call it
    when the connection is discarded, never while a guard using this interrupt is
    active): the watched socket itself may be closed by its library while the watchdog
    acts, and its descriptor number reused by an unrelated socket; the duplicate is not.
    ``shutdown(2)`` on the duplicate ends the connection for every descriptor of it, TLS
    included. One interrupt may serve many guards in turn (a kept-alive connection's
    requests).
    """

    def __init__(self) -> None:
        self._duplicate: socket.socket | None = None

    def watch(self, sock: socket.socket) -> None:
        if self._duplicate is not None:  # replacing it could close it under the watchdog
            raise RuntimeError("a SocketInterrupt watches one socket")
        # fromfd() duplicates the descriptor; SSLSocket.dup() is not implemented.
        self._duplicate = socket.fromfd(sock.fileno(), sock.family, sock.type, sock.proto)

    def __call__(self) -> None:
        duplicate = self._duplicate
        if duplicate is not None:
            with contextlib.suppress(OSError):
                duplicate.shutdown(socket.SHUT_RDWR)

    def release(self) -> None:
        """Close the duplicate (no guard may be using this interrupt any more)."""
        duplicate, self._duplicate = self._duplicate, None
        if duplicate is not None:
            duplicate.close()
