"""How a relay runs the steps of its batches (:mod:`~django_orders.outbox.batches`).

- :class:`Serial` — claim, send, wait, write back; then the next batch. All on the
  relay's own thread, one database connection.
- :class:`Pipelined` — the same steps, overlapped: the next batch is claimed on a thread
  of its own while the current one is sent, and a sent batch is written back on another
  while the next one is sent, with up to ``publisher.max_batches_in_flight`` batches handed
  to the publisher at once. A fast broker then waits for neither database step.

Both keep every guarantee, for the same reason: a batch is leased from its claim until its
write-back commits, so its events are still unfinished and block the later events of their
orders — a batch claimed ahead never holds a successor of an event still being published
or written back (per-order order) — and the lease keeps other relays off every batch a
relay holds (no duplicates among healthy relays). The relay picks :class:`Pipelined`
wherever threads with connections of their own see what the relay's own connection sees:
not inside a caller's transaction (a test's), not on an in-memory SQLite database.

Each :meth:`drain` processes batches until a claim finds nothing due (or the relay
stops), and hands every batch's :class:`~django_orders.outbox.metrics.BatchReport` to the
relay's ``account`` callback.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from django.db import connections

from django_orders.outbox.batches import Batch, Batches, BatchReport
from django_orders.outbox.claims import Claim

logger = logging.getLogger("django_orders.relay")

T = TypeVar("T")
Account = Callable[[BatchReport], None]


class Strategy:
    """What a strategy is: :meth:`drain` the due batches, then :meth:`close`. Each batch's
    report goes to ``account``; whether the relay is stopping, to ``batches.stopping()``."""

    #: As the relay's start-up line says it ("claim ahead and write behind=yes/no").
    overlapped: bool

    def __init__(self, batches: Batches, *, account: Account) -> None:
        self.batches = batches
        self.account = account
        self.stopping = batches.stopping

    def drain(self, due_by: dt.datetime | None) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the strategy holds (threads, their connections)."""


class Serial(Strategy):
    """One batch at a time, every step on the relay's thread."""

    overlapped = False

    def __init__(
        self, batches: Batches, *, account: Account, before_claim: Callable[[], None]
    ) -> None:
        super().__init__(batches, account=account)
        self.before_claim = before_claim

    def drain(self, due_by: dt.datetime | None) -> None:
        """Process batches until a claim finds nothing due, or the relay stops."""
        while not self.stopping():
            self.before_claim()
            if self.process_one(due_by) is None:
                return

    def process_one(self, due_by: dt.datetime | None = None) -> BatchReport | None:
        """Claim, send, wait for and write back one batch; ``None`` when nothing was due."""
        started = time.monotonic()
        claim = self.batches.claim(due_by)
        if claim is None:
            return None
        if self.stopping():
            self.batches.give_back(claim)
            return None
        try:
            batch = self.batches.send(claim, started)
            results = self.batches.wait(batch)
        except BaseException:
            self.batches.keeper.release(claim)
            raise
        report = self.batches.write_back(batch, results)
        self.account(report)
        return report


class Pipelined(Strategy):
    """Claim ahead and write behind (module docstring).

    At any time it holds at most: one claim in progress or done ahead, up to ``depth``
    batches handed to the publisher, and one write-back in progress — each leased.
    """

    overlapped = True

    def __init__(self, batches: Batches, *, account: Account, using: str, depth: int) -> None:
        super().__init__(batches, account=account)
        self.depth = max(1, depth)
        self._claimer = _DatabaseThread(using, "orders-relay-claim")
        self._writer = _DatabaseThread(using, "orders-relay-write")
        self._writing: Future[BatchReport] | None = None

    def drain(self, due_by: dt.datetime | None) -> None:
        """Process batches until a claim finds nothing due, or the relay stops.

        A claim made while batches were still unfinished can come back empty only
        because their events block the next events of their orders: once they are
        written back, those are due — so the empty claim is made once more, and
        ``--once`` takes them in the same run.
        """
        sent: deque[Batch] = deque()  # handed to the publisher, results not in yet
        next_claim: Future[Claim | None] | None = self._claim(due_by)
        claimed_while_busy = False
        try:
            while not self.stopping():
                assert next_claim is not None
                started = time.monotonic()
                pending, next_claim = next_claim, None  # an error here leaves nothing to give back
                claim = pending.result()
                if claim is None:
                    self._write_behind_all(sent)
                    if not claimed_while_busy:
                        break
                    self._wait_for_write_back()
                    next_claim, claimed_while_busy = self._claim(due_by), False
                    continue
                if self.stopping():
                    self.batches.give_back(claim)
                    break
                next_claim, claimed_while_busy = self._claim(due_by), True
                sent.append(self.batches.send(claim, started))
                while len(sent) >= self.depth:
                    self._write_behind(sent.popleft())
        except BaseException:
            # Already failing (or stopping at once): what is in flight and being written
            # back still lands, and an error of its own is only logged.
            try:
                self._finish(sent, next_claim)
            except Exception:
                logger.exception("Outbox relay: writing a batch's outcome back failed")
            raise
        self._finish(sent, next_claim)

    def close(self) -> None:
        """End the claim and write-back threads, closing their connections."""
        self._claimer.close()
        self._writer.close()

    # -- the steps on their threads -----------------------------------------------------

    def _claim(self, due_by: dt.datetime | None) -> Future[Claim | None]:
        return self._claimer.submit(self.batches.claim, due_by)

    def _write_behind(self, batch: Batch) -> None:
        """Wait for a batch's results and queue its write-back on the write-back thread
        (one at a time, in order); then wait for the write-back before it. Queued first,
        so that a failure of the one before never leaves this batch unwritten."""
        results = self.batches.wait(batch)
        before, self._writing = (
            self._writing,
            self._writer.submit(self.batches.write_back, batch, results),
        )
        if before is not None:
            self.account(before.result())

    def _write_behind_all(self, sent: deque[Batch]) -> None:
        """Every batch handed over, oldest first, to the write-back; if one fails, the
        others still land, then the first error is raised."""
        error: Exception | None = None
        while sent:
            try:
                self._write_behind(sent.popleft())
            except Exception as exc:
                error = error or exc
        if error is not None:
            raise error

    def _wait_for_write_back(self) -> None:
        """Wait for the write-back in progress and account its batch."""
        writing, self._writing = self._writing, None
        if writing is not None:
            self.account(writing.result())

    def _finish(self, sent: deque[Batch], next_claim: Future[Claim | None] | None) -> None:
        """Stopping or drained: the batches in flight finish and are written back, and the
        batch claimed ahead (if any) is given back, never sent."""
        try:
            self._write_behind_all(sent)
            self._wait_for_write_back()
        finally:
            if next_claim is not None:
                self._give_back(next_claim)

    def _give_back(self, next_claim: Future[Claim | None]) -> None:
        try:
            claim = next_claim.result()
            if claim is not None:
                self.batches.give_back(claim)
        except Exception:
            # Its lease runs out instead; nothing of it was sent.
            logger.exception("Outbox relay: releasing the batch claimed ahead failed")


class _DatabaseThread:
    """One worker thread with a database connection of its own (connections are per
    thread), replaced before each job when broken or past ``CONN_MAX_AGE`` — as the
    relay's own loop does — and closed on that thread by :meth:`close`."""

    def __init__(self, using: str, name: str) -> None:
        self.using = using
        self._name = name
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    def submit(self, job: Callable[..., T], *args: Any) -> Future[T]:
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
