"""Keeping claims alive, and claiming the next batch while the current one is published.

- :class:`LeaseKeeper`: a thread renewing the lease of every batch the relay holds (the
  one being published and the one claimed ahead of it), so a slow broker never lets a
  lease run out under a live relay.
- :class:`Claimer`: a thread of its own (so a database connection of its own) that claims
  the next batch while the relay publishes and writes back the current one. The broker
  then never waits for the claim: with a fast broker the claim is the longest step.

Claiming ahead keeps every guarantee: the batch in flight is leased, so its events are
still unfinished and block the later events of their orders — the batch claimed ahead
never holds a successor of an event still being published (per-order order), and the
lease keeps other relays off both batches (no duplicates among healthy relays).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor

from django.db import connections

from django_orders.outbox.claims import Claim, ClaimStore

logger = logging.getLogger("django_orders.relay")


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


class Claimer:
    """Claims batches on a thread of its own; each claim is handed to ``keeper`` at once."""

    def __init__(self, store: ClaimStore, keeper: LeaseKeeper) -> None:
        self.store = store
        self.keeper = keeper
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="orders-relay-claim")

    def submit(self, limit: int, due_by: dt.datetime | None) -> Future[Claim | None]:
        return self._executor.submit(self._claim, limit, due_by)

    def _claim(self, limit: int, due_by: dt.datetime | None) -> Claim | None:
        # As the relay's own loop does: a connection broken by a database restart, or
        # past CONN_MAX_AGE, is replaced before it is used.
        connections[self.store.using].close_if_unusable_or_obsolete()
        claim = self.store.claim(limit, due_by=due_by)
        if claim is not None:
            # Renewed from now on: it may wait behind a slow publish of the batch before.
            self.keeper.hold(claim)
        return claim

    def close(self) -> None:
        """Close the thread's connection and end the thread."""
        try:
            # Run on the claim thread: connections are per thread.
            self._executor.submit(self._close_connection).result(timeout=10)
        except Exception:
            logger.exception("Closing the claim thread's connection failed")
        self._executor.shutdown(wait=False)

    def _close_connection(self) -> None:
        connections[self.store.using].close()
