"""Keeping claims alive: a thread renewing the lease of every batch a relay holds.

A relay may hold several batches at once: those being published, the one claimed ahead
and the one being written back (:mod:`~django_orders.outbox.strategies`).
Each stays leased from its claim until its write-back commits, so a slow broker never
lets a lease run out under a live relay, and other relays never take a batch it holds.
"""

from __future__ import annotations

import logging
import threading

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

    def held(self) -> list[Claim]:
        """The claims held now (what the relay's heartbeat reports)."""
        with self._cond:
            return list(self._claims.values())

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
        if self._thread.ident is not None:  # started
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
