"""The domain rules of an order: create, confirm, close.

Every transition bumps ``version`` by exactly one, records its ``order.*`` event in the
same transaction, and sends its Django signal after commit. Views translate HTTP to these
calls and back; they hold no rules of their own.

The transitions work on an order locked with :func:`get_order_for_update`, inside a
transaction: the lock is what makes "check the version, then write" atomic, so of N
concurrent confirms with the same ``If-Match`` exactly one succeeds. Where nothing of the
host's runs, :func:`confirm_if_current` and :func:`close_if_current` make the same change
in one statement conditional on the version and status instead (the database makes the
check and the write one), and say when they changed nothing.

Host extensions (docs/guide/extending.md): the functions take the values of the host's own
order fields as keyword arguments, and run the host's rules (the ``ORDER_RULES`` setting)
inside their transaction, once the change is known to be valid and before anything is
written; a rule refuses by raising :class:`RuleViolation`, and then nothing is written.

One module, past 400 lines, on purpose: each rule of an order's life has both its ways
here — the locked path and the one-statement path, with the conditions that choose
between them — so a reader checking what a confirm may do sees every way it can happen.
"""

from __future__ import annotations

import contextlib
import functools
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from django.core.exceptions import FieldDoesNotExist
from django.db import connections, router, transaction
from django.utils import timezone

from django_orders import signals, sql
from django_orders.conf import orders_settings
from django_orders.models import AbstractOrder, OutboxEvent, get_order_model
from django_orders.outbox import recording as events

Status = AbstractOrder.Status

#: Statuses a rule may refuse with (docs/guide/extending.md).
RULE_STATUSES = frozenset({409, 422})
#: Members of every problem document, which a rule's extension members may not replace.
_PROBLEM_MEMBERS = frozenset({"type", "title", "status", "detail", "code"})


class InvalidTransition(Exception):
    """The order's status does not allow the requested transition."""

    def __init__(self, order: AbstractOrder, target: str) -> None:
        super().__init__(
            f"An order that is {Status(order.status).value} cannot become {Status(target).value}."
        )
        self.order = order
        self.target = target


class RuleViolation(Exception):
    """Raised by a host rule to refuse a change; the API answers it as a problem.

    ``status`` is 422 (the request is understood but breaks a business rule) or 409 (it
    conflicts with the current state of something, e.g. stock). ``code`` and ``detail``
    become the problem's members, ``extensions`` further members
    (``creditLimitCents=…``), which may not replace the standard ones.
    """

    def __init__(self, code: str, detail: str, *, status: int = 422, **extensions: Any) -> None:
        if status not in RULE_STATUSES:
            raise ValueError(f"A rule refuses with status 409 or 422, not {status!r}.")
        clashes = _PROBLEM_MEMBERS.intersection(extensions)
        if clashes:
            raise ValueError(f"Extension members may not replace {sorted(clashes)}.")
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.status = status
        self.extensions = extensions


@dataclass(frozen=True)
class OrderChange:
    """What a host rule is asked to allow (the argument of each ``ORDER_RULES`` callable).

    - ``action``: ``"create"``, ``"confirm"`` or ``"close"``.
    - ``order``: on create the new order, not yet written; on confirm and close the order
      as stored, locked until the transaction ends, not yet changed.
    - ``changes``: the values the action sets, by model field name — the validated data,
      host fields included (``{"total_cents": 1250, "customer": <Customer>}``).
    - ``context``: what the caller passed; the package's views pass ``{"request": …,
      "view": …}`` (the DRF request, so ``request.user`` is the authenticated user).
    """

    action: str
    order: AbstractOrder
    changes: Mapping[str, Any]
    context: Mapping[str, Any]

    def value(self, name: str) -> Any:
        """The value field ``name`` will have once the change is written."""
        return self.changes[name] if name in self.changes else getattr(self.order, name)


def create_order(
    tenant_id: str,
    *,
    total_cents: int | None = None,
    currency: str | None = None,
    metadata: Mapping[str, str] | None = None,
    context: Mapping[str, Any] | None = None,
    then: Callable[[AbstractOrder], sql.Statements] | None = None,
    claim: Callable[[AbstractOrder], sql.KeyClaim] | None = None,
    **fields: Any,
) -> AbstractOrder:
    """Create a draft order (version 1) and its ``order.created`` event.

    ``fields`` are values of the host's own order fields (``customer=…``); ``context``
    is handed to the host's rules. ``then``, given the order about to be written (its
    values final), answers statements of the caller's to run in the same transaction
    right after the order and its event — in their round trip where the driver allows
    (the idempotent create stores its response so: docs/benchmarks.md, Finding 12).

    ``claim``, given the order about to be written, answers an ``INSERT … ON CONFLICT DO
    NOTHING RETURNING`` of the caller's (the idempotent create's key): the order, its
    event and the ``NOTIFY`` are then written in its statement and only if it inserts a
    row (docs/benchmarks.md, Finding 14). If it inserts nothing, nothing is written and
    no signal is sent: the order returned is unsaved (``order._state.adding``). Only
    where :func:`can_claim_with_writes` says yes.
    """
    model = get_order_model()
    if fields:
        check_host_fields(model, fields)
    now = timezone.now()
    order = model(
        tenant_id=tenant_id,
        total_cents=total_cents,
        currency=currency or orders_settings.DEFAULT_CURRENCY,
        metadata=dict(metadata or {}),
        created_at=now,
        updated_at=now,
        **fields,
    )
    db = router.db_for_write(model)
    # No savepoint: inside a caller's transaction an error must roll back the whole unit.
    # With a claim and no rules to ask, the writes are one statement, atomic by itself.
    atomic: contextlib.AbstractContextManager[Any] = (
        contextlib.nullcontext()
        if claim is not None and not orders_settings.ORDER_RULES
        else transaction.atomic(using=db, savepoint=False)
    )
    with atomic:
        if orders_settings.ORDER_RULES:
            given = {"total_cents": total_cents, "currency": currency, "metadata": metadata}
            changes = {name: value for name, value in given.items() if value is not None}
            ask_rules("create", order, {**changes, **fields}, context)
        # The order, its event and the NOTIFY in one round trip on PostgreSQL, as
        # statements built once (docs/benchmarks.md, Findings 3-4).
        if claim is not None:
            event = events.build_order_event(order, events.ORDER_CREATED)
            guard = claim(order)
            if not sql.insert_objects_if_claimed(
                db, guard, [order, event], notify=events.NOTIFY_CHANNEL
            ):
                return order  # the claim inserted nothing: neither did the order
        elif router.db_for_write(OutboxEvent) == db:
            event = events.build_order_event(order, events.ORDER_CREATED)
            after = None if then is None else functools.partial(then, order)
            events.insert_with_notify(db, [order, event], after=after)
        else:  # pragma: no cover - a host routing the outbox elsewhere
            order.save(using=db, force_insert=True)
            events.record_order_event(order, events.ORDER_CREATED)
            if then is not None:
                with connections[db].cursor() as cursor:
                    sql.run_statements(cursor, then(order))
        _send_on_commit(signals.order_created, order, db)
    return order


def can_claim_with_writes(using: str) -> bool:
    """Whether :func:`create_order` can write the order and its event in the statement of
    a claim on database ``using``: where nothing of the host's runs — no ``ORDER_RULES``
    or ``EVENT_ENRICHERS`` (they would run before a key already there is known, and its
    replay must not run them), PostgreSQL with the orders and the outbox there, their rows
    written without ``save()`` (:func:`django_orders.sql.can_insert_raw`), no field that
    saving fills (``auto_now_add``, a host field's ``pre_save()``: the response is
    rendered before the statement), and no ``pre_init`` / ``post_init`` receiver of the
    host's to run when they are made."""
    return connections[using].vendor == "postgresql" and _runs_nothing_of_the_hosts(using)


def _runs_nothing_of_the_hosts(using: str) -> bool:
    """Whether the package's own writes of an order and its event, in one statement on
    database ``using``, run nothing of the host's that the ORM's way would: no
    ``ORDER_RULES`` or ``EVENT_ENRICHERS``; the orders and the outbox on ``using``; their
    rows written without ``save()`` (no ``save()`` of the host's, no ``pre_save`` /
    ``post_save`` receiver, no database default: :func:`django_orders.sql.can_insert_raw`);
    no field that saving fills (:func:`django_orders.sql.fills_fields_on_save`); and no
    ``pre_init`` / ``post_init`` receiver of either model, which would see other instances
    than the locked path makes (tests/test_transition_fast_path.py). What both fast paths
    need; each adds its own: the create, PostgreSQL (its claim's statement); a transition,
    the document (:func:`django_orders.sql.can_fetch_documents`, PostgreSQL's too)."""
    model = get_order_model()
    return (
        not orders_settings.ORDER_RULES
        and not orders_settings.EVENT_ENRICHERS
        and router.db_for_write(model) == using
        and router.db_for_write(OutboxEvent) == using
        and sql.can_insert_raw(model, OutboxEvent)
        and not sql.fills_fields_on_save(model)
        and not sql.has_init_receivers(model, OutboxEvent)
    )


def get_order_for_update(tenant_id: str, order_id: uuid.UUID | str) -> AbstractOrder:
    """The tenant's order, locked until the end of the transaction.

    Raises the order model's ``DoesNotExist`` for a missing order and for another tenant's
    order alike: the two are indistinguishable by design.
    """
    model = get_order_model()
    if not sql.plain_manager(model):  # a host manager's get_queryset() has its say
        return model._default_manager.select_for_update().get(tenant_id=tenant_id, pk=order_id)
    # The same SELECT … FOR UPDATE as the ORM's, built once (docs/benchmarks.md, Finding 10).
    order = sql.fetch_one(router.db_for_write(model), model, tenant_id, order_id, for_update=True)
    if order is None:
        raise model.DoesNotExist(f"{model._meta.object_name} matching query does not exist.")
    return order


@dataclass(frozen=True)
class _Move:
    """One transition, as both of its paths make it: the action the host's rules are
    told, the status it leaves and the one it enters, the timestamp it sets, its event
    and its signal."""

    action: str
    source: str
    target: str
    stamp: str
    event_type: str
    signal: Any

    def locked(
        self,
        order: AbstractOrder,
        changes: Mapping[str, Any],
        context: Mapping[str, Any] | None,
    ) -> AbstractOrder:
        """The transition on ``order``, locked by the caller, in a transaction."""
        db = router.db_for_write(type(order))
        # No savepoint: inside a caller's transaction an error must roll back the whole unit.
        with transaction.atomic(using=db, savepoint=False):
            ask_rules(self.action, order, changes, context)
            now = timezone.now()
            for name, value in changes.items():
                setattr(order, name, value)
            order.status = self.target
            setattr(order, self.stamp, now)
            order.version += 1
            order.updated_at = now
            fields = ("status", "version", "updated_at", self.stamp, *changes)
            event = events.build_order_event(order, self.event_type)
            events.save_with_event(db, order, fields, event)
            _send_on_commit(self.signal, order, db)
        return order

    def if_current(
        self,
        tenant_id: str,
        order_id: uuid.UUID,
        version: int,
        changes: Mapping[str, Any],
        then: Callable[[AbstractOrder], object] | None,
    ) -> AbstractOrder | None:
        """The transition in one conditional statement, or ``None`` if it changed nothing."""
        model = get_order_model()
        db = router.db_for_write(model)
        now = timezone.now()
        # What locked() sets, in its order; the event as build_order_event() makes it,
        # its payload written by the statement (docs/benchmarks.md, Finding 16).
        order = sql.update_if_current(
            db,
            model,
            {
                "tenant_id": tenant_id,
                "pk": order_id,
                "version": version,
                "status": self.source,
                "updated_at": now,
            },
            {
                "status": self.target,
                "version": version + 1,
                "updated_at": now,
                self.stamp: now,
                **changes,
            },
            events.order_event(
                tenant_id, order_id, version + 1, self.event_type, now, payload=None
            ),
            notify=events.NOTIFY_CHANNEL,
        )
        if order is not None:
            if then is not None:
                then(order)
            # In autocommit the statement is committed: on_commit() sends it now.
            _send_on_commit(self.signal, order, db)
        return order


_CONFIRM = _Move(
    "confirm",
    Status.DRAFT,
    Status.CONFIRMED,
    "confirmed_at",
    events.ORDER_CONFIRMED,
    signals.order_confirmed,
)
_CLOSE = _Move(
    "close", Status.CONFIRMED, Status.CLOSED, "closed_at", events.ORDER_CLOSED, signals.order_closed
)


def confirm_order(
    order: AbstractOrder,
    *,
    total_cents: int,
    context: Mapping[str, Any] | None = None,
    **fields: Any,
) -> AbstractOrder:
    """draft → confirmed, setting ``totalCents`` (and the host's ``fields``, if any).

    ``order`` must be locked.
    """
    if order.status != _CONFIRM.source:
        raise InvalidTransition(order, _CONFIRM.target)
    if fields:
        check_host_fields(type(order), fields)
    return _CONFIRM.locked(order, {"total_cents": total_cents, **fields}, context)


def close_order(order: AbstractOrder, *, context: Mapping[str, Any] | None = None) -> AbstractOrder:
    """confirmed → closed. ``order`` must be locked."""
    if order.status != _CLOSE.source:
        raise InvalidTransition(order, _CLOSE.target)
    return _CLOSE.locked(order, {}, context)


def confirm_if_current(
    tenant_id: str,
    order_id: uuid.UUID,
    version: int,
    *,
    total_cents: int,
    then: Callable[[AbstractOrder], object] | None = None,
) -> AbstractOrder | None:
    """draft → confirmed, setting ``totalCents``, if the tenant's order ``order_id`` is a
    draft at ``version``: one conditional statement, no lock held beyond it
    (:func:`django_orders.sql.update_if_current`). The confirmed order, or ``None`` when it
    is not such a draft (missing, another version, another status): then nothing was
    written, and :func:`confirm_order` on the locked order says why. ``then(order)`` is
    called with the confirmed order before the signal is sent (in autocommit, at once):
    what it makes of the order — the view's answer — is what the locked path's answer,
    made before its commit, would be, whatever a receiver does to the instance.

    Only where :func:`can_transition_in_one_statement` says yes (no host rules to ask).
    """
    return _CONFIRM.if_current(tenant_id, order_id, version, {"total_cents": total_cents}, then)


def close_if_current(
    tenant_id: str,
    order_id: uuid.UUID,
    version: int,
    *,
    then: Callable[[AbstractOrder], object] | None = None,
) -> AbstractOrder | None:
    """confirmed → closed if the tenant's order ``order_id`` is confirmed at ``version``;
    as :func:`confirm_if_current`."""
    return _CLOSE.if_current(tenant_id, order_id, version, {}, then)


def can_transition_in_one_statement(using: str) -> bool:
    """Whether :func:`confirm_if_current` and :func:`close_if_current` give what the
    locked transitions give, on database ``using``: where nothing of the host's runs, as
    for :func:`can_claim_with_writes` — no ``ORDER_RULES`` or ``EVENT_ENRICHERS``, the
    orders and the outbox on ``using``, rows written without ``save()``, no field that
    saving fills, no ``pre_init`` / ``post_init`` receiver of the order or the event model
    (the order's instance the locked path makes is the row before the change, this one
    the row after; its event is made with the payload this one's statement writes) —
    and where the order model's document is ``AbstractOrder.to_dict()``'s with its fields,
    on PostgreSQL (:func:`django_orders.sql.can_fetch_documents`: the statement builds the
    event's payload from the row)."""
    return _runs_nothing_of_the_hosts(using) and sql.can_fetch_documents(
        get_order_model(), connections[using]
    )


def ask_rules(
    action: str,
    order: AbstractOrder,
    changes: Mapping[str, Any],
    context: Mapping[str, Any] | None,
) -> None:
    """Ask each of the host's ``ORDER_RULES`` in turn; the first :class:`RuleViolation`
    refuses the change. Call inside the change's transaction, before writing anything.

    Without rules this is one attribute read: no object is built, no query is made.
    """
    rules = orders_settings.ORDER_RULES
    if not rules:
        return
    change = OrderChange(
        action, order, MappingProxyType(dict(changes)), MappingProxyType(dict(context or {}))
    )
    for rule in rules:
        rule(change)


@functools.cache
def _package_field_names() -> frozenset[str]:
    fields = AbstractOrder._meta.local_fields
    return frozenset({f.name for f in fields} | {f.attname for f in fields})


def check_host_fields(model: type[AbstractOrder], fields: Mapping[str, Any]) -> None:
    """Refuse (``TypeError``) a value for anything but a host field of ``model``.

    The package's own fields are set by the domain rules alone (``status`` only through a
    transition, ``version`` only by +1): a host serializer cannot reach them this way.
    """
    for name in fields:
        if name in _package_field_names():
            raise TypeError(f"{name!r} is set by django-orders, not as a host field.")
        try:
            field = model._meta.get_field(name)
        except FieldDoesNotExist:
            raise TypeError(f"{model.__name__} has no field {name!r}.") from None
        if not getattr(field, "concrete", False) or field.many_to_many:
            raise TypeError(f"{model.__name__}.{name} is not a column of the order.")


def _send_on_commit(signal: Any, order: AbstractOrder, using: str) -> None:
    transaction.on_commit(lambda: signal.send(sender=type(order), order=order), using=using)
