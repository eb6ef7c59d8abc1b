"""Keeping claims alive, and talking to the database while a batch is published.

- :class:`LeaseKeeper`: a thread renewing the lease of every batch the relay holds (the
  one being published, the one claimed ahead of it and the one being written back), so
  a slow broker never lets a lease run out under a live relay.
- :class:`Claimer`: a thread of its own (so a database connection of its own) that claims
  the next batch while the relay publishes the current one.
- :class:`Settler`: another, that writes back the outcome of the batch just published
  while the relay publishes the next one.

The broker then waits for neither database step: with a fast broker they are the longest
ones. Both keep every guarantee: a batch is leased from its claim until its write-back
commits, so its events are still unfinished and block the later events of their orders —
a batch claimed ahead never holds a successor of an event still being published or
written back (per-order order), and the lease keeps other relays off every batch a relay
holds (no duplicates among healthy relays).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from django.db import connections

from django_orders.outbox.claims import Claim, ClaimStore

logger = logging.getLogger("django_orders.relay")

T = TypeVar("T")


class LeaseKeeper:
    """A thread that renews, every ``interval``, the lease of each claim it holds.

    A claim is renewed at most ``interval`` after :meth:`hold` and every ``interval``
    after that, until :meth:`release`. Renewals are fenced on the lease token, so one
    that races the write-back of its batch changes nothing.
    """

    def __init__(self, store: ClaimStore, interval: float) -> None:
        self.store = store
        self.interval = max(0.05, interval)
        self._claims: dict[int, Claim] = {}
        self._stopped = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="orders-relay-lease", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def hold(self, claim: Claim) -> None:
        with self._cond:
            self._claims[id(claim)] = claim
            self._cond.notify_all()

    def release(self, claim: Claim | None = None) -> None:
        """Stop renewing ``claim`` (every claim when ``None``)."""
        with self._cond:
            if claim is None:
                self._claims.clear()
            else:
                self._claims.pop(id(claim), None)
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    self._cond.wait_for(lambda: self._stopped or bool(self._claims))
                    # One interval from now, unless every claim is released meanwhile
                    # (the next one then gets a full interval of its own).
                    self._cond.wait_for(
                        lambda: self._stopped or not self._claims, timeout=self.interval
                    )
                    if self._stopped:
                        return
                    held = list(self._claims.values())
                for claim in held:
                    try:
                        renewed = self.store.renew(claim)
                    except Exception:
                        logger.exception("Renewing the lease failed")
                        # Reconnect on the next try (the database may have restarted).
                        connections[self.store.using].close()
                        break
                    logger.debug("Renewed the lease of %d events", renewed)
        finally:
            connections[self.store.using].close()


class _DatabaseThread:
    """One worker thread with a database connection of its own (connections are per
    thread), replaced before each job when broken or past ``CONN_MAX_AGE`` — as the
    relay's own loop does — and closed on that thread by :meth:`close`."""

    def __init__(self, using: str, name: str) -> None:
        self.using = using
        self._name = name
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    def _submit(self, job: Callable[..., T], *args: Any) -> Future[T]:
        return self._executor.submit(self._run, job, *args)

    def _run(self, job: Callable[..., T], *args: Any) -> T:
        connections[self.using].close_if_unusable_or_obsolete()
        return job(*args)

    def close(self) -> None:
        """Close the thread's connection and end the thread."""
        try:
            self._executor.submit(self._close_connection).result(timeout=10)
        except Exception:
            logger.exception("Closing the database connection of thread %s failed", self._name)
        self._executor.shutdown(wait=False)

    def _close_connection(self) -> None:
        connections[self.using].close()


class Claimer(_DatabaseThread):
    """Claims batches on a thread of its own; each claim is handed to ``keeper`` at once."""

    def __init__(self, store: ClaimStore, keeper: LeaseKeeper) -> None:
        super().__init__(store.using, "orders-relay-claim")
        self.store = store
        self.keeper = keeper

    def submit(self, limit: int, due_by: dt.datetime | None) -> Future[Claim | None]:
        return self._submit(self._claim, limit, due_by)

    def _claim(self, limit: int, due_by: dt.datetime | None) -> Claim | None:
        claim = self.store.claim(limit, due_by=due_by)
        if claim is not None:
            # Renewed from now on: it may wait behind a slow publish of the batch before.
            self.keeper.hold(claim)
        return claim


class Settler(_DatabaseThread):
    """Writes batches' outcomes back on a thread of its own while the next batch is published.

    One write-back runs at a time, in the order handed over. :meth:`submit` hands one over
    and then waits for the one before it, so a relay publishing a batch has at most one
    write-back running behind it (and, with the :class:`Claimer`, one batch claimed ahead).
    A write-back's outcome — its report, or the error it raised — comes back to the relay's
    thread from :meth:`submit` (for the one before) or :meth:`drain`.

    Keeps the guarantees: a batch being written back is still leased until its write-back
    commits, so its events block the later events of their orders in every claim; the
    write-back is fenced on the lease as before.
    """

    def __init__(self, using: str) -> None:
        super().__init__(using, "orders-relay-write")
        self._running: Future[Any] | None = None

    def submit(self, write_back: Callable[[], T]) -> T | None:
        """Start ``write_back`` once the one before it is done; return that one's result."""
        before, self._running = self._running, self._submit(write_back)
        return None if before is None else before.result()

    def drain(self) -> Any:
        """Wait for the write-back in progress; its result (``None`` if there was none)."""
        running, self._running = self._running, None
        return None if running is None else running.result()
