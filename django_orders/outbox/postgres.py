"""The claim store for PostgreSQL: a claim in one statement, the database's clock.

Same rules as :class:`~django_orders.outbox.claims.ClaimStore` (tests/test_outbox_rules.py
runs both on the same data), fewer round trips: a claim is one
``UPDATE … FROM (SELECT … FOR UPDATE SKIP LOCKED) RETURNING``, a batch's outcome one
statement for the published events and one for the failures (the deferral of their
aggregates' later events included), a lease renewal one. The statements are in
:func:`django_orders.sql.outbox_statements`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from django.db import connections, transaction

from django_orders.conf import orders_settings
from django_orders.models import OutboxEvent
from django_orders.outbox.claims import (
    DEAD,
    MAX_ERROR_LENGTH,
    PARKED_UNTIL,
    PENDING,
    PUBLISHED,
    Claim,
    ClaimedEvent,
    ClaimStore,
    Failure,
)
from django_orders.sql import outbox_statements, uuid_array


class PostgresClaimStore(ClaimStore):
    """The claim in one statement, with the database clock for leases."""

    def __init__(self, using: str) -> None:
        super().__init__(using)
        self.statements = outbox_statements(self.connection)
        # Django has the driver leave jsonb as text and decodes it in the field: the
        # same decoding, json.loads with the field's decoder, without the field's call.
        self._loads: tuple[Callable[[str | bytes], Any], ...] = tuple(
            _json_loads(OutboxEvent._meta.get_field(name)) for name in ("payload", "extensions")
        )

    @property
    def concurrent(self) -> bool:
        return True

    def describe(self) -> str:
        driver = self.connection.Database.__name__  # type: ignore[attr-defined]
        return (
            f"concurrent (PostgreSQL via {driver}, SELECT ... FOR UPDATE SKIP LOCKED, "
            "database clock)"
        )

    def claim_sql(
        self, token: uuid.UUID, limit: int, due_by: dt.datetime | None = None
    ) -> tuple[str, list[Any]]:
        """The claim statement and its parameters."""
        # The setting is read per claim: a test may change it while a store lives.
        sql = self.statements.claim[
            (bool(orders_settings.OUTBOX_DEAD_BLOCKS_ORDER), due_by is not None)
        ]
        params: list[Any] = [str(token), orders_settings.OUTBOX_LEASE]
        if due_by is not None:
            params.append(due_by)
        params.append(limit)
        return sql, params

    def claim(self, limit: int, *, due_by: dt.datetime | None = None) -> Claim | None:
        token = uuid.uuid4()
        sql, params = self.claim_sql(token, limit, due_by)
        leased_at = time.monotonic()
        # One statement, its own short transaction (autocommit: one round trip, no
        # BEGIN and COMMIT of their own): the row locks of FOR UPDATE last only until its
        # commit; the lease is what keeps other relays off the rows while this one
        # publishes. Inside a caller's transaction (a test's), a savepoint as before.
        #
        # The claim's commit need not wait for its WAL flush: the statement sets
        # synchronous_commit off for its own transaction (set_config(…, true), the same
        # as SET LOCAL). It is visible to other relays at once all the same; only a crash
        # of the database server could undo it, and an undone claim is just an unleased
        # event again: claimed anew, at worst published once more (at-least-once).
        # Attempts are counted again by the next claim. The write-back stays synchronous,
        # and its flush makes this commit durable too (WAL is flushed in order).
        connection = self.connection
        atomic = (
            transaction.atomic(using=self.using)
            if connection.in_atomic_block
            else contextlib.nullcontext()
        )
        with atomic, connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
        if not rows:
            return None
        # In publishing order already, ``time`` as text: only the JSON is decoded here,
        # with the decoder of the model's fields, and an empty ``extensions`` not at all.
        loads_payload, loads_extensions = self._loads
        batch = []
        for (
            pk,
            tenant_id,
            aggregate_type,
            aggregate_id,
            aggregate_version,
            type_,
            payload,
            extensions,
            time_,
            attempts,
        ) in rows:
            if isinstance(payload, str | bytes):
                payload = loads_payload(payload)
            if extensions == "{}":
                extensions = {}
            elif isinstance(extensions, str | bytes):
                extensions = loads_extensions(extensions)
            batch.append(
                ClaimedEvent(
                    pk,
                    tenant_id,
                    aggregate_type,
                    aggregate_id,
                    aggregate_version,
                    type_,
                    payload,
                    extensions,
                    time_,
                    attempts,
                )
            )
        return Claim(token, batch, leased_at)

    def mark_published(
        self, token: uuid.UUID, published: Sequence[str | uuid.UUID], now: dt.datetime
    ) -> int:
        params: list[Any] = [PUBLISHED, now, uuid_array(published), str(token)]
        with self.connection.cursor() as cursor:
            cursor.execute(self.statements.published, params)
            return int(cursor.rowcount)

    def mark_failed(self, token: uuid.UUID, failures: Sequence[Failure]) -> tuple[int, int]:
        params: list[Any] = [
            uuid_array(failure.event.id for failure in failures),
            [DEAD if failure.dead else PENDING for failure in failures],
            [failure.available_at for failure in failures],
            [failure.error[:MAX_ERROR_LENGTH] for failure in failures],
            str(token),
            PARKED_UNTIL,
            bool(orders_settings.OUTBOX_DEAD_BLOCKS_ORDER),
        ]
        with self.connection.cursor() as cursor:
            cursor.execute(self.statements.failed, params)
            retried, dead = cursor.fetchone()
        return int(retried), int(dead)

    def renew(self, claim: Claim) -> int:
        leased_at = time.monotonic()
        with self.connection.cursor() as cursor:
            cursor.execute(self.statements.renew, self._renew_params(claim))
            renewed = int(cursor.rowcount)
        claim.renewed(renewed, leased_at)
        return renewed

    def reconfirm(self, claim: Claim) -> set[str]:
        leased_at = time.monotonic()
        with self.connection.cursor() as cursor:
            cursor.execute(self.statements.reconfirm, self._renew_params(claim))
            held = {str(pk) for (pk,) in cursor.fetchall()}
        claim.leased_at = leased_at
        return held

    @staticmethod
    def _renew_params(claim: Claim) -> list[Any]:
        return [orders_settings.OUTBOX_LEASE, uuid_array(claim.ids), str(claim.token)]


def _json_loads(field: Any) -> Callable[[str | bytes], Any]:
    """``json.loads`` as ``field`` (a ``JSONField``) decodes: with its decoder, if any.

    Without one, the decoder's ``raw_decode`` on the text PostgreSQL wrote (no whitespace
    around it to skip; anything else goes through ``json.loads``, which raises as the
    field would): two regular expressions and two calls fewer per event.
    """
    decoder = getattr(field, "decoder", None)
    if decoder is not None:
        return functools.partial(json.loads, cls=decoder)
    raw_decode = json.JSONDecoder().raw_decode

    def loads(text: str | bytes) -> Any:
        if isinstance(text, str):
            try:
                value, end = raw_decode(text)
            except json.JSONDecodeError:
                pass
            else:
                if end == len(text):
                    return value
        return json.loads(text)

    return loads


def claim_store_for(using: str) -> ClaimStore:
    """The claim store that fits the database behind ``using``: this one on PostgreSQL,
    the portable ORM one elsewhere."""
    if connections[using].vendor == "postgresql":
        return PostgresClaimStore(using)
    return ClaimStore(using)
