"""Recording outbox events inside the transaction that makes the change.

Two ways in, one row shape:

- the package's own order events (:func:`record_order_event`, :func:`build_order_event`),
  written by :mod:`django_orders.services` with the order's version as the aggregate's;
- :func:`record_event`, the public function for any aggregate of the host's: the next
  version of the aggregate comes from a per-aggregate counter row whose lock the
  transaction holds until it ends, so two transactions recording events for one
  aggregate at once are published in the order they commit.

Every event carries the trace context of the span current when it is recorded, when
OpenTelemetry is installed (:mod:`~django_orders.outbox.tracing`), and passes through the
``EVENT_ENRICHERS`` before it is written (to add CloudEvents
extension attributes or data, e.g. a correlation id), and its ``INSERT`` is followed, on
PostgreSQL, by ``NOTIFY`` on :data:`NOTIFY_CHANNEL` in the same round trip
(docs/benchmarks.md, Findings 3-4): a listening relay wakes the moment the change commits
(a notification is delivered only on commit and dropped on rollback).
"""

from __future__ import annotations

import datetime
import re
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from django.db import connections, router, transaction
from django.db.models import Model
from django.utils import timezone

from django_orders import sql
from django_orders.conf import orders_settings
from django_orders.models import AbstractOrder, OutboxEvent
from django_orders.outbox.tracing import add_trace_context
from django_orders.tenancy import get_current_tenant

__all__ = ["NOTIFY_CHANNEL", "record_event"]

NOTIFY_CHANNEL = "django_orders_outbox"
NOTIFY_SQL = f"NOTIFY {NOTIFY_CHANNEL}"

#: The package's own event types, before ``EVENT_TYPE_PREFIX``.
ORDER_CREATED = "order.created"
ORDER_CONFIRMED = "order.confirmed"
ORDER_CLOSED = "order.closed"
#: The aggregate type of the package's orders: :func:`record_event` leaves it alone.
ORDER_AGGREGATE = "order"

#: CloudEvents 1.0 §3.1.1: attribute names are lower-case ASCII letters and digits; they
#: SHOULD NOT exceed 20 characters (we hold to it: some transports carry them as headers).
EXTENSION_NAME = re.compile(r"\A[a-z0-9]{1,20}\Z")
#: Names the document already uses (core attributes, ``data``, the package's ``tenantid``).
RESERVED_NAMES = frozenset(
    {
        "specversion",
        "id",
        "source",
        "type",
        "subject",
        "time",
        "datacontenttype",
        "dataschema",
        "data",
        "data_base64",
        "tenantid",
    }
)
#: ``aggregate_type`` and ``aggregate_id`` as the outbox table holds them.
AGGREGATE_TYPE_MAX_LENGTH = OutboxEvent._meta.get_field("aggregate_type").max_length or 64
AGGREGATE_ID_MAX_LENGTH = OutboxEvent._meta.get_field("aggregate_id").max_length or 128
TYPE_MAX_LENGTH = OutboxEvent._meta.get_field("type").max_length or 128


def record_event(
    type: str,
    *,
    aggregate_type: str,
    aggregate_id: str | int | uuid.UUID,
    data: Mapping[str, Any],
    tenant_id: str | None = None,
    version: int | None = None,
    extensions: Mapping[str, str | int | bool] | None = None,
    using: str | None = None,
) -> OutboxEvent:
    """Record an event of the host's own aggregate, to be published by the relay.

    Call it inside the transaction that makes the change the event describes: the event
    is committed with it, or rolled back with it. (Outside one, it runs in a transaction
    of its own.) The relay publishes it like the package's order events, with the same
    guarantees — at least once, in order per aggregate, backoff, dead events holding back
    their aggregate, re-queue in the admin.

    - ``type``: the CloudEvents ``type``, as it goes on the wire (``EVENT_TYPE_PREFIX`` is
      for the package's own events; give yours their full name, e.g.
      ``"com.example.invoice.issued"``).
    - ``aggregate_type``, ``aggregate_id``: what the event is about (``subject`` on the
      wire is the id). Events of one aggregate — same tenant, type and id — are published
      in the order of their versions. ``"order"`` is the package's own.
    - ``data``: the CloudEvents ``data``, a JSON object.
    - ``tenant_id``: defaults to the current tenant (the request's, or what
      :func:`~django_orders.tenancy.tenant_context` set).
    - ``version``: the aggregate's version this event describes. By default the next one
      of a per-aggregate counter, locked until the transaction ends: a concurrent
      transaction recording an event of the same aggregate waits for it, so versions
      follow commit order. Pass your own only if your aggregate has a version column
      that your transaction updates under a lock.
    - ``extensions``: CloudEvents extension attributes (lower-case letters and digits,
      at most 20 characters; strings, integers or booleans). With OpenTelemetry installed
      the current span's ``traceparent`` / ``tracestate`` are added, unless given here.

    Raises ``ValueError`` for an argument the outbox cannot hold; the transaction is the
    caller's to roll back.
    """
    tenant = tenant_id if tenant_id is not None else get_current_tenant()
    if not tenant:
        raise ValueError("record_event() needs a tenant_id: there is no current tenant.")
    if aggregate_type == ORDER_AGGREGATE:
        raise ValueError(
            f"The aggregate type {ORDER_AGGREGATE!r} is the package's own orders: their "
            "events are recorded by django_orders.services."
        )
    _check_text("type", type, TYPE_MAX_LENGTH)
    _check_text("aggregate_type", aggregate_type, AGGREGATE_TYPE_MAX_LENGTH)
    key = str(aggregate_id)
    _check_text("aggregate_id", key, AGGREGATE_ID_MAX_LENGTH)
    if not isinstance(data, Mapping):
        raise ValueError("record_event() data must be a JSON object (a mapping).")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
        raise ValueError("record_event() version must be an integer.")
    if version is not None and version < 1:
        raise ValueError("record_event() version must be 1 or more.")
    check_extensions(extensions or {})
    db = using or router.db_for_write(OutboxEvent)
    now = timezone.now()
    event = OutboxEvent(
        tenant_id=tenant,
        aggregate_type=aggregate_type,
        aggregate_id=key,
        type=type,
        payload=dict(data),
        extensions=dict(extensions or {}),
        created_at=now,
        available_at=now,
    )
    # No savepoint: inside a caller's transaction an error must roll back the whole unit.
    with transaction.atomic(using=db, savepoint=False):
        event.aggregate_version = version or _next_version(db, tenant, aggregate_type, key)
        enrich(event)
        insert_with_notify(db, [event])
    return event


def build_order_event(order: AbstractOrder, event_type: str) -> OutboxEvent:
    """The (unsaved, enriched) ``event_type`` event of ``order`` as it stands now;
    ``event_type`` is one of the package's (``ORDER_CREATED``, …), before the prefix."""
    return order_event(
        order.tenant_id, order.id, order.version, event_type, order.updated_at, order.to_dict()
    )


def order_event(
    tenant_id: str,
    order_id: Any,
    version: int,
    event_type: str,
    at: datetime.datetime,
    payload: dict[str, Any] | None,
) -> OutboxEvent:
    """The (unsaved, enriched) ``event_type`` event of version ``version`` of the order
    ``order_id``, changed at ``at``: :func:`build_order_event`'s, for a writer that knows
    the order's document only once the row is changed — a conditional transition, whose
    statement writes the payload (``payload=None``; ``django_orders.sql.update_if_current``)
    and which runs only without ``EVENT_ENRICHERS``."""
    event = OutboxEvent(
        tenant_id=tenant_id,
        aggregate_type=ORDER_AGGREGATE,
        aggregate_id=str(order_id),
        aggregate_version=version,
        type=f"{type_prefix()}{event_type}",
        payload=payload,
        extensions={},
        created_at=at,
        available_at=at,
    )
    enrich(event)
    return event


def record_order_event(order: AbstractOrder, event_type: str) -> OutboxEvent:
    """Write ``event_type`` for ``order`` as it stands now. Call inside the transaction."""
    event = build_order_event(order, event_type)
    insert_with_notify(router.db_for_write(OutboxEvent), [event])
    return event


def save_with_event(
    using: str, order: AbstractOrder, update_fields: tuple[str, ...], event: OutboxEvent
) -> None:
    """Save ``update_fields`` of the changed ``order`` and write its ``event``, waking the
    relays: one statement on PostgreSQL (docs/benchmarks.md, Finding 10), ``save()`` and an
    insert when a ``pre_save`` / ``post_save`` receiver listens or the outbox is routed
    to another database, and when the order model overrides ``save()`` (a host's save()
    ran on every transition before Finding 10). Call inside the transaction."""
    if router.db_for_write(OutboxEvent) == using and sql.can_insert_raw(type(order), OutboxEvent):
        sql.update_with_insert(using, order, update_fields, event, notify=NOTIFY_CHANNEL)
        return
    order.save(using=using, update_fields=update_fields)
    insert_with_notify(router.db_for_write(OutboxEvent), [event])


def type_prefix() -> str:
    """``EVENT_TYPE_PREFIX`` with its trailing dot (``""`` when unset)."""
    prefix = orders_settings.EVENT_TYPE_PREFIX
    return f"{prefix}." if prefix and not prefix.endswith(".") else prefix


def enrich(event: OutboxEvent) -> None:
    """Add the current trace context to an event about to be written, run the
    ``EVENT_ENRICHERS`` on it, then check what they added: an enricher may set
    ``event.extensions[name]`` and keys of ``event.payload``."""
    add_trace_context(event.extensions)
    enrichers = orders_settings.EVENT_ENRICHERS
    if not enrichers:
        return  # nothing to run; what the caller gave was checked already
    for enricher in enrichers:
        enricher(event)
    check_extensions(event.extensions)


def check_extensions(extensions: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` unless ``extensions`` are CloudEvents extension attributes the
    document can carry: lower-case names of at most 20 letters or digits, not already an
    attribute of the envelope, with a string (no NUL), integer or boolean value."""
    for name, value in extensions.items():
        if not isinstance(name, str) or not EXTENSION_NAME.match(name):
            raise ValueError(
                f"CloudEvents extension attribute names are 1-20 lower-case letters or "
                f"digits, not {name!r}."
            )
        if name in RESERVED_NAMES:
            raise ValueError(f"{name!r} is an attribute the CloudEvent already has.")
        if not isinstance(value, str | int | bool) or (isinstance(value, str) and "\x00" in value):
            raise ValueError(
                f"The extension attribute {name!r} must be a string (without NUL), an "
                f"integer or a boolean, not {value!r}."
            )


def _check_text(name: str, value: Any, max_length: int) -> None:
    if not isinstance(value, str) or not value or len(value) > max_length or "\x00" in value:
        raise ValueError(
            f"record_event() {name} must be a non-empty string of at most {max_length} "
            f"characters without NUL, not {value!r}."
        )


def _next_version(using: str, tenant_id: str, aggregate_type: str, aggregate_id: str) -> int:
    """The aggregate's next version, its counter row locked until the transaction ends."""
    connection = connections[using]
    with connection.cursor() as cursor:
        cursor.execute(
            sql.sequence_statement(connection), [tenant_id, aggregate_type, aggregate_id]
        )
        (version,) = cursor.fetchone()
    return int(version)


def insert_with_notify(
    using: str, objs: list[Model], *, after: Callable[[], sql.Statements] | None = None
) -> None:
    """INSERT the new rows ``objs`` (an event among them) and wake the relays.

    One ``cursor.execute`` on PostgreSQL (``INSERT …; NOTIFY``); ``Model.save()`` instead
    when a model overrides it or a ``pre_save`` / ``post_save`` receiver listens, so a
    host's model sees what the ORM would show it. ``after`` gives the caller's statements
    to run next, in the same round trip where the driver allows
    (:func:`django_orders.sql.insert_objects`).
    """
    notify = notify_statement(using)
    if sql.can_insert_raw(*{type(obj) for obj in objs}):
        sql.insert_objects(using, objs, then=notify, after=after)
        return
    for obj in objs:
        obj.save(using=using, force_insert=True)
    notify_relays(using)
    if after is not None:
        with connections[using].cursor() as cursor:
            sql.run_statements(cursor, after())


def notify_statement(using: str) -> str | None:
    """The ``NOTIFY`` that wakes listening relays, or ``None`` off PostgreSQL."""
    # Identical notifications in one transaction are folded into one by PostgreSQL.
    return NOTIFY_SQL if connections[using].vendor == "postgresql" else None


def notify_relays(using: str) -> None:
    """Wake listening relays when the current transaction commits (PostgreSQL only)."""
    statement = notify_statement(using)
    if statement is None:
        return
    with connections[using].cursor() as cursor:
        cursor.execute(statement)
