"""Every hand-written SQL statement of the package, built once per database vendor from the
models' metadata, each with a name.

Why hand-written (docs/benchmarks.md, Findings 2-4, 6 and 10-11): the ORM compiles every
query anew, about 0.3-0.5 ms of Python each, on the hottest paths — the idempotent create
(key claim, order, event, stored response), the transitions (lock, update, event), the
list's page, and the relay (claim, write-back). These builders make the same statements
once:

- :func:`insert_objects` — ``INSERT`` of new model instances, several in one round trip on
  PostgreSQL, values adapted by each field (``get_db_prep_save``) as the ORM adapts them
  (:func:`save_params`: Django's own field classes' adaptation without the calls, Finding
  13); :func:`insert_objects_if_claimed` — the same in one statement guarded by a claim's
  ``INSERT … ON CONFLICT DO NOTHING`` (the idempotent create's key, Finding 14);
- :func:`fetch_one`, :func:`fetch_page` — an order by tenant and id (locked for a
  transition) and the list's keyset page, rows made into instances as a queryset makes
  them; :func:`update_with_insert` — a transition's ``UPDATE``, its event's ``INSERT`` and
  the relays' wake-up in one statement on PostgreSQL (Findings 10-11);
  :func:`update_if_current` — the same without the locked read, conditional on the
  version and status the client holds, the event's payload made by PostgreSQL from the
  changed row (Finding 16);
- :func:`outbox_statements` — the PostgreSQL relay's claim, write-backs and lease renewals;
- :func:`idempotency_statements` — the ``Idempotency-Key`` claim, lookup, takeover and
  stored response.

Table and column names come from ``Model._meta`` (a ``db_table`` or ``db_column`` change
follows), statuses from the models' choices, and rows read back are mapped by column name
(:class:`Row` types list the columns a ``SELECT`` / ``RETURNING`` names), never by a
position kept in step by hand elsewhere. Each builder is decorated with :func:`built_once`,
which names its statements (by the builder and its arguments) and keeps them.

One module on purpose, though past 400 lines: a reader looking for "the SQL this package
writes by hand" finds all of it here, with the one way of caching and the one column
mapping.

Django's ``pre_save`` / ``post_save`` signals are part of what ``Model.save()`` does: when
a receiver is connected for a model, :func:`can_insert_raw` says no and callers use
``save()`` instead, so hosts listening to those signals see no difference.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar, cast

from django.conf import settings
from django.db import DatabaseError, connections, models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import NOT_PROVIDED, Field, Manager, Model
from django.db.models.signals import post_init, post_save, pre_init, pre_save

from django_orders.models import AbstractOrder, IdempotencyKey, OutboxEvent, OutboxSequence

Builder = TypeVar("Builder", bound=Callable[..., Any])


def built_once(build: Builder) -> Builder:
    """Decorate ``build(connection, *args)`` so it runs once per database vendor and
    ``args`` (positional, hashable: models, names, flags); later calls read its result
    from a dict, keyed by ``(connection.vendor, *args)`` — a statement's name."""
    made: dict[tuple[Any, ...], Any] = {}

    @functools.wraps(build)
    def built(connection: BaseDatabaseWrapper, *args: Any) -> Any:
        key = (connection.vendor, *args)
        try:
            return made[key]
        except KeyError:
            value = made[key] = build(connection, *args)
            return value

    return cast(Builder, built)


class Columns(Mapping[str, str]):
    """The quoted column of each field of ``model``, by field name, for ``str.format``:
    ``"WHERE {status} = %s".format_map(Columns(OutboxEvent, connection))``."""

    def __init__(self, model: type[Model], connection: BaseDatabaseWrapper) -> None:
        self.model = model
        self.quote = connection.ops.quote_name

    def __getitem__(self, name: str) -> str:
        if name == "table":
            return self.quote(self.model._meta.db_table)
        field = self.model._meta.get_field(name)
        if not isinstance(field, Field):  # a reverse relation has no column
            raise KeyError(name)
        return self.quote(str(field.column))

    def __iter__(self) -> Any:
        return iter(field.name for field in self.model._meta.concrete_fields)

    def __len__(self) -> int:
        return len(self.model._meta.concrete_fields)

    def listed(self, names: Iterable[str], prefix: str = "") -> str:
        """``prefix.col_a, prefix.col_b, …`` for ``names``."""
        return ", ".join(f"{prefix}{self[name]}" for name in names)


def row(cursor: Any, fields: Sequence[str]) -> dict[str, Any] | None:
    """The next row of ``cursor`` as a dict keyed by ``fields`` — the names the statement
    listed, in the order it listed them (the builder and the reader share the tuple)."""
    values = cursor.fetchone()
    return None if values is None else dict(zip(fields, values, strict=True))


# -- inserts ------------------------------------------------------------------------------


def can_insert_raw(*models: type[Model]) -> bool:
    """True unless one of ``models`` overrides ``save()``, has a ``pre_save`` /
    ``post_save`` receiver or a field the database fills (``db_default`` without a
    ``default``): a host's model then goes through ``save()``, as it would through the
    ORM."""
    return not any(
        model.save is not Model.save
        or pre_save.has_listeners(model)
        or post_save.has_listeners(model)
        or has_database_defaults(model)
        for model in models
    )


@functools.cache
def has_database_defaults(model: type[Model]) -> bool:
    """Whether a new instance of ``model`` may hold a ``DatabaseDefault`` — a field with a
    ``db_default`` and no ``default`` —, which the ORM's insert writes as ``DEFAULT`` and
    a parameter cannot carry (found in review)."""
    return any(
        getattr(field, "db_default", NOT_PROVIDED) is not NOT_PROVIDED and not field.has_default()
        for field in model._meta.concrete_fields
    )


#: ``pre_save()`` methods that return the attribute as it is (without ``auto_now``).
_PLAIN_PRE_SAVE = (Field.pre_save, models.DateField.pre_save, models.DateTimeField.pre_save)


@functools.cache
def fills_fields_on_save(model: type[Model]) -> bool:
    """Whether saving an instance of ``model`` sets one of its fields: ``auto_now`` /
    ``auto_now_add``, or a field class with a ``pre_save()`` of its own (a host's, a
    ``FileField``). The value is then known only once the insert's parameters are made,
    so nothing may be rendered from the instance before."""
    return any(
        getattr(field, "auto_now", False)
        or getattr(field, "auto_now_add", False)
        or type(field).pre_save not in _PLAIN_PRE_SAVE
        for field in model._meta.concrete_fields
    )


class WrittenFields(tuple["Field[Any, Any]", ...]):  # quoted: Field is no generic at run time
    """The fields a statement writes, in its parameters' order, with their adapters
    (:func:`save_params`), made once with the statement by its builder."""

    adapters: tuple[_Adapter | None, ...]

    @classmethod
    def of(
        cls, connection: BaseDatabaseWrapper, fields: Iterable[Field[Any, Any]]
    ) -> WrittenFields:
        written = cls(fields)
        written.adapters = tuple(_adapter(connection, field) for field in written)
        return written


@built_once
def insert_statement(
    connection: BaseDatabaseWrapper, model: type[Model]
) -> tuple[str, WrittenFields]:
    """``INSERT INTO <table> (<every concrete column>) VALUES (%s, …)`` and its fields."""
    meta = model._meta
    qn = connection.ops.quote_name
    fields = WrittenFields.of(connection, meta.concrete_fields)
    sql = (
        f"INSERT INTO {qn(meta.db_table)} ({', '.join(qn(str(f.column)) for f in fields)}) "
        f"VALUES ({', '.join(['%s'] * len(fields))})"
    )
    return sql, fields


def insert_params(
    connection: BaseDatabaseWrapper, obj: Model, fields: Sequence[Field[Any, Any]]
) -> list[Any]:
    """The values of ``obj`` for :func:`insert_statement`, adapted as the ORM adapts them."""
    return save_params(connection, obj, fields, adding=True)


def save_params(
    connection: BaseDatabaseWrapper, obj: Model, fields: Sequence[Field[Any, Any]], *, adding: bool
) -> list[Any]:
    """``field.get_db_prep_save(field.pre_save(obj, adding), connection)`` for each field:
    what ``save()`` sends. For a field of a class whose adaptation is Django's own (the
    package's: ``CharField``, ``UUIDField``, ``DateTimeField``, …) and a value of the type
    it expects, the same adaptation without the calls in between (docs/benchmarks.md,
    Finding 14); any other field or value goes through the field. The statement builders'
    :class:`WrittenFields` carry their adapters; for other fields they are made here."""
    ops = connection.ops
    params = []
    adapters = (
        fields.adapters
        if isinstance(fields, WrittenFields)
        else WrittenFields.of(connection, fields).adapters
    )
    for field, adapt in zip(fields, adapters, strict=True):
        if adapt is not None:
            value = adapt(getattr(obj, field.attname), ops)
            if value is not _AS_FIELD_DOES:
                params.append(value)
                continue
        params.append(field.get_db_prep_save(field.pre_save(obj, adding), connection))
    return params


def value_params(
    connection: BaseDatabaseWrapper, fields: WrittenFields, values: Iterable[Any]
) -> list[Any]:
    """``field.get_db_prep_save(value, connection)`` for each field and its value, adapted as
    :func:`save_params` adapts an instance's: for values that are not an instance's
    attributes (a conditional ``UPDATE``'s), of fields whose ``pre_save()`` returns the
    attribute as it is (:func:`fills_fields_on_save` says no)."""
    ops = connection.ops
    return [
        prepared
        if adapt is not None and (prepared := adapt(value, ops)) is not _AS_FIELD_DOES
        else field.get_db_prep_save(value, connection)
        for field, adapt, value in zip(fields, fields.adapters, values, strict=True)
    ]


#: An adapter's answer for a value it does not know: the field adapts it.
_AS_FIELD_DOES: Any = object()
_Adapter = Callable[[Any, Any], Any]


def _adapter(connection: BaseDatabaseWrapper, field: Field[Any, Any]) -> _Adapter | None:
    """What ``get_db_prep_save(pre_save(…))`` makes of ``field``'s plain values, when its
    class adapts as the Django class it derives from does (no method of its own on that
    path), else ``None``. ``None`` values stay ``None``, as every one of them keeps it."""
    kind = type(field)
    if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
        return None
    path = ("pre_save", "get_db_prep_save", "get_db_prep_value", "get_prep_value", "to_python")

    def adapts_as(base: type[Any]) -> bool:
        return isinstance(field, base) and all(
            getattr(kind, name) is getattr(base, name) for name in path
        )

    if adapts_as(models.CharField) or adapts_as(models.TextField):
        return lambda value, ops: (
            value if value is None or isinstance(value, str) else _AS_FIELD_DOES
        )
    if adapts_as(models.IntegerField):
        internal_type = field.get_internal_type()
        return lambda value, ops: (
            ops.adapt_integerfield_value(value, internal_type)
            if value is None or type(value) is int
            else _AS_FIELD_DOES
        )
    if adapts_as(models.DateTimeField):
        return lambda value, ops: (
            ops.adapt_datetimefield_value(value)
            if value is None or (type(value) is datetime.datetime and value.tzinfo is not None)
            else _AS_FIELD_DOES
        )
    if adapts_as(models.UUIDField):
        native = connection.features.has_native_uuid_field
        return lambda value, ops: (
            value if value is None or (native and type(value) is uuid.UUID) else _AS_FIELD_DOES
        )
    if adapts_as(models.JSONField):
        encoder = getattr(field, "encoder", None)
        return lambda value, ops: (
            ops.adapt_json_value(value, encoder)
            if type(value) in (dict, list)
            else None
            if value is None
            else _AS_FIELD_DOES
        )
    return None


def mark_saved(obj: Model, using: str) -> None:
    """What ``save()`` records on an instance it inserted."""
    obj._state.adding = False
    obj._state.db = using


def can_batch_statements(connection: BaseDatabaseWrapper) -> bool:
    """Whether several statements with parameters can go in one ``cursor.execute``.

    True on PostgreSQL with client-side parameter binding (psycopg 3 as Django uses it by
    default, and psycopg2): the driver sends one simple-protocol query. Not with
    ``server_side_binding`` (extended protocol: one statement per execute), nor on SQLite.
    """
    if connection.vendor != "postgresql":
        return False
    return connection.settings_dict.get("OPTIONS", {}).get("server_side_binding") is not True


#: Statements with their parameters, run after an insert in its round trip.
Statements = Sequence[tuple[str, Sequence[Any]]]


def insert_objects(
    using: str,
    objs: Sequence[Model],
    *,
    then: str | None = None,
    after: Callable[[], Statements] | None = None,
) -> None:
    """INSERT the new instances ``objs``, in one round trip where the driver allows it.

    ``then`` is a statement without parameters (a ``NOTIFY``) sent after them, in the same
    ``cursor.execute`` on PostgreSQL (Finding 4: each round trip is a wait on the server).
    ``after`` gives further statements with their parameters, sent after ``then`` in the
    same round trip; it is called once the instances' values are adapted (their
    ``pre_save()`` done), so it sees them as they are written. Call only after
    :func:`can_insert_raw` said yes for their models.
    """
    connection = connections[using]
    inserts: list[tuple[str, Sequence[Any]]] = []
    for obj in objs:
        sql, fields = insert_statement(connection, type(obj))
        inserts.append((sql, insert_params(connection, obj, fields)))
    if then:
        inserts.append((then, ()))
    if after is not None:
        inserts.extend(after())
    with connection.cursor() as cursor:
        if can_batch_statements(connection):
            cursor.execute(
                "; ".join(sql for sql, _ in inserts),
                [p for _, params in inserts for p in params],
            )
        else:
            run_statements(cursor, inserts)
    for obj in objs:
        mark_saved(obj, using)


def run_statements(cursor: Any, statements: Statements) -> None:
    """Execute ``statements`` one by one on ``cursor`` (no parameters: ``None``, so a
    literal ``%`` stays as written)."""
    for statement, params in statements:
        cursor.execute(statement, params or None)


@dataclasses.dataclass
class KeyClaim:
    """A caller's ``INSERT … ON CONFLICT DO NOTHING RETURNING <one column>`` of a unique
    key (the idempotent create's ``Idempotency-Key``) that guards other inserts
    (:func:`insert_objects_if_claimed`); ``inserted`` is what it returned, ``None`` until it
    ran or when it inserted nothing. Not ``outbox.claims.Claim``, a relay's claimed batch."""

    sql: str
    params: Sequence[Any]
    inserted: Any = None


def insert_objects_if_claimed(
    using: str, claim: KeyClaim, objs: Sequence[Model], *, notify: str
) -> bool:
    """INSERT the new instances ``objs`` and ``pg_notify(notify, '')`` only if ``claim``
    inserts its row: one statement, one round trip (PostgreSQL; docs/benchmarks.md,
    Finding 14)::

        WITH claimed AS (<claim>), i0 AS (INSERT INTO <table> (…) SELECT %s, … FROM claimed),
             … SELECT claimed.*, pg_notify(%s, '') FROM claimed

    A claim that conflicts inserts nothing, and then neither do the others: ``objs`` stay
    unsaved and the answer is ``False``. Call only after :func:`can_insert_raw` said yes
    for their models.
    """
    connection = connections[using]
    parts = [f"claimed AS ({claim.sql})"]
    params = list(claim.params)
    for number, obj in enumerate(objs):
        sql, fields = _insert_select_statement(connection, type(obj))
        parts.append(f"i{number} AS ({sql})")
        params += insert_params(connection, obj, fields)
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH {', '.join(parts)} SELECT claimed.*, pg_notify(%s, '') FROM claimed",
            [*params, notify],
        )
        found = cursor.fetchone()
    if found is None:
        return False
    claim.inserted = found[0]
    for obj in objs:
        mark_saved(obj, using)
    return True


@built_once
def _insert_select_statement(
    connection: BaseDatabaseWrapper, model: type[Model]
) -> tuple[str, WrittenFields]:
    """``INSERT INTO <table> (<every concrete column>) SELECT %s, … FROM claimed``: one row
    per row of the ``claimed`` CTE (none or one). PostgreSQL types the parameters by their
    target columns, as it does in ``VALUES``."""
    sql, fields = insert_statement(connection, model)
    head, _, _ = sql.partition(" VALUES (")
    return f"{head} SELECT {', '.join(['%s'] * len(fields))} FROM claimed", fields


# -- one order: read, lock, change --------------------------------------------------------


def plain_manager(model: type[Model]) -> bool:
    """Whether ``model``'s default manager is Django's own ``Manager`` (a host manager may
    filter or annotate in ``get_queryset()``: then the ORM reads the row, not this module)."""
    return type(model._default_manager) is Manager


def _field(model: type[Model], name: str) -> Field[Any, Any]:
    field = model._meta.get_field(name)
    if not isinstance(field, Field):  # a reverse relation has no column
        raise TypeError(f"{model.__name__}.{name} is not a column.")
    return field


def _pk_name(model: type[Model]) -> str:
    pk = model._meta.pk
    assert pk is not None
    return pk.name


@dataclasses.dataclass(frozen=True)
class _Columns:
    """What reading ``model``'s rows needs: its concrete fields in column order, their
    attribute names, and the ORM's converters — the backend's, then the field's
    (``SQLCompiler.get_converters()``) — as ``(position, converter, column)`` for the
    fields that have any (on PostgreSQL, ``metadata``'s JSON alone)."""

    fields: tuple[Field[Any, Any], ...]
    attnames: tuple[str, ...]
    conversions: tuple[tuple[int, Any, Any], ...]


@built_once
def _select_parts(connection: BaseDatabaseWrapper, model: type[Model]) -> _Columns:
    fields = tuple(model._meta.concrete_fields)
    conversions = tuple(
        (position, converter, field.cached_col)
        for position, field in enumerate(fields)
        for converter in (
            connection.ops.get_db_converters(field.cached_col) + field.get_db_converters(connection)
        )
    )
    return _Columns(fields, tuple(f.attname for f in fields), conversions)


@built_once
def _select_statement(
    connection: BaseDatabaseWrapper, model: type[Model], for_update: bool
) -> tuple[str, _Columns]:
    """``SELECT <every concrete column> … WHERE tenant_id = %s AND <pk> = %s [FOR UPDATE]``
    and what reading its row needs."""
    c = Columns(model, connection)
    read = _select_parts(connection, model)
    lock = " FOR UPDATE" if for_update and connection.features.has_select_for_update else ""
    sql = (
        f"SELECT {c.listed(f.name for f in read.fields)} FROM {c['table']} "
        f"WHERE {c['tenant_id']} = %s AND {c[_pk_name(model)]} = %s{lock}"
    )
    return sql, read


def fetch_one(
    using: str, model: type[Model], tenant_id: str, pk: Any, *, for_update: bool = False
) -> Any:
    """The tenant's row ``pk`` of ``model`` as an instance (``Model.from_db``, as the ORM
    builds it), or ``None``; locked until the transaction ends with ``for_update``.

    What ``model._default_manager[.select_for_update()].get(tenant_id=…, pk=…)`` does,
    without compiling a query per call. Only for :func:`plain_manager` models.
    """
    connection = connections[using]
    sql, read = _select_statement(connection, model, for_update)
    pk_field = model._meta.pk
    assert pk_field is not None
    params = [tenant_id, pk_field.get_db_prep_value(pk, connection)]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        values = cursor.fetchone()
    if values is None:
        return None
    return _instance(connection, using, model, read, values)


def _instance(
    connection: BaseDatabaseWrapper,
    using: str,
    model: type[Model],
    columns: _Columns,
    values: Sequence[Any],
) -> Any:
    """``model``'s instance from a row of ``columns``, as a queryset builds it."""
    if columns.conversions:
        values = list(values)
        for position, converter, column in columns.conversions:
            values[position] = converter(values[position], column, connection)
    return model.from_db(using, columns.attnames, values)


@built_once
def _page_statement(
    connection: BaseDatabaseWrapper,
    model: type[Model],
    filters: tuple[str, ...],
    ordering: tuple[str, ...],
    after: bool,
    select: str,
) -> str:
    """``SELECT <select> … WHERE <filter> = %s AND … [AND (<ordering columns>) < (%s, …)]
    ORDER BY … LIMIT %s`` (``>`` when ascending): the keyset page of
    ``pagination.KeysetPagination``. ``select`` names what a row is made of: ``"instances"``
    (every concrete column) or ``"documents"`` (:data:`DOCUMENT_COLUMNS`)."""
    c = Columns(model, connection)
    where = [f"{c[name]} = %s" for name in filters]
    descending = ordering[0].startswith("-")
    columns = [c[name.lstrip("-")] for name in ordering]
    if after:
        operator = "<" if descending else ">"
        where.append(f"({', '.join(columns)}) {operator} ({', '.join(['%s'] * len(columns))})")
    direction = " DESC" if descending else " ASC"
    selected = (
        c.listed(f.name for f in model._meta.concrete_fields)
        if select == "instances"
        else _document_columns(c)
    )
    # Qualified: an unqualified ORDER BY name means an output column first, and the
    # documents' ``id::text`` is one (a text sort, not the index's order).
    order_by = ", ".join(f"{c['table']}.{column}{direction}" for column in columns)
    return (
        f"SELECT {selected} FROM {c['table']} WHERE {' AND '.join(where)} "
        f"ORDER BY {order_by} LIMIT %s"
    )


def fetch_page(
    using: str,
    model: type[Model],
    filters: Mapping[str, Any],
    ordering: Sequence[str],
    position: Sequence[Any] | None,
    limit: int,
    *,
    documents: bool = False,
) -> list[Any]:
    """Up to ``limit + 1`` instances of ``model`` whose fields equal ``filters`` (none of
    them ``None``), in ``ordering`` (field names, all ``-`` or none), after
    ``position`` — what ``KeysetPagination.get_page_queryset()`` reads, without
    compiling a query per page (docs/benchmarks.md, Finding 11). The row-value
    comparison needs PostgreSQL or SQLite; only for :func:`plain_manager` models.

    With ``documents``, the rows' ``to_dict()`` documents instead of instances, made by
    PostgreSQL (:func:`page_documents`): in :data:`DOCUMENT_ORDERING`, and only where
    :func:`can_fetch_documents` says yes.
    """
    if documents and tuple(ordering) != DOCUMENT_ORDERING:
        raise ValueError(f"documents are read in {DOCUMENT_ORDERING}, not {ordering}")
    connection = connections[using]
    select = "documents" if documents else "instances"
    sql = _page_statement(
        connection, model, tuple(filters), tuple(ordering), position is not None, select
    )
    params = [_field(model, name).get_db_prep_value(v, connection) for name, v in filters.items()]
    if position is not None:
        params += [
            _field(model, name.lstrip("-")).get_db_prep_value(value, connection)
            for name, value in zip(ordering, position, strict=True)
        ]
    params.append(limit + 1)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    if documents:
        return page_documents(rows)
    read = _select_parts(connection, model)
    return [_instance(connection, using, model, read, row) for row in rows]


# -- the list's documents, made by PostgreSQL ---------------------------------------------

#: ``AbstractOrder.to_dict()``'s members in its order, each with the model field it shows.
DOCUMENT_COLUMNS = (
    ("id", "id"),
    ("tenantId", "tenant_id"),
    ("status", "status"),
    ("version", "version"),
    ("totalCents", "total_cents"),
    ("currency", "currency"),
    ("metadata", "metadata"),
    ("createdAt", "created_at"),
    ("updatedAt", "updated_at"),
    ("confirmedAt", "confirmed_at"),
    ("closedAt", "closed_at"),
)
#: The ordering a page of documents is read in (the cursor's key is parsed back from them).
DOCUMENT_ORDERING = ("-created_at", "-id")
_TIMESTAMPS = frozenset({"created_at", "updated_at", "confirmed_at", "closed_at"})


def _document_columns(c: Columns) -> str:
    """The ``SELECT`` list of :data:`DOCUMENT_COLUMNS`: the id and ``metadata`` as text,
    timestamps as ``rfc3339()`` writes them (UTC, microseconds, ``Z``)."""
    return ", ".join(
        f"{c[name]}::text" if name == "metadata" else _document_value(c, name)
        for _key, name in DOCUMENT_COLUMNS
    )


def _document_value(c: Columns, name: str, prefix: str = "") -> str:
    """The SQL of the document's member shown by field ``name``: as ``to_dict()`` writes it
    where that is text (the id, the timestamps), else the column."""
    column = f"{prefix}{c[name]}"
    if name in _TIMESTAMPS:
        return _RFC3339.format(column=column)
    return f"{column}::text" if name == "id" else column


def can_fetch_documents(model: type[Model], connection: BaseDatabaseWrapper) -> bool:
    """Whether :func:`fetch_page` with ``documents`` gives exactly what ``model``'s instances'
    ``to_dict()`` would: PostgreSQL with time zones on, a :func:`plain_manager` model that
    keeps ``AbstractOrder``'s ``to_dict()``, ``__init__()``, ``from_db()`` and fields
    (their classes; ``metadata`` without a decoder), and no ``pre_init`` / ``post_init``
    receiver. Anything else a host changed reads instances (docs/benchmarks.md, Finding 15).
    """
    if connection.vendor != "postgresql" or not settings.USE_TZ:
        return False
    if has_init_receivers(model):
        return False
    return (
        issubclass(model, AbstractOrder)
        and model.to_dict is AbstractOrder.to_dict
        and model.__init__ is Model.__init__
        and model.from_db.__func__ is Model.from_db.__func__  # type: ignore[attr-defined]
        and plain_manager(model)
        and _keeps_order_fields(model)
    )


def has_init_receivers(*models: type[Model]) -> bool:
    """Whether a ``pre_init`` / ``post_init`` receiver listens for one of ``models``: the
    host's code then runs whenever an instance is made, which a path that makes none (or
    makes one a replay would not) must leave to the ORM."""
    return any(signal.has_listeners(model) for signal in (pre_init, post_init) for model in models)


@functools.cache
def _keeps_order_fields(model: type[Model]) -> bool:
    for _key, name in DOCUMENT_COLUMNS:
        field = model._meta.get_field(name)
        own = AbstractOrder._meta.get_field(name)
        if type(field) is not type(own) or getattr(field, "decoder", None) is not None:
            return False
    return True


def page_documents(rows: Iterable[Sequence[Any]]) -> list[dict[str, Any]]:
    """The ``to_dict()`` documents of rows of :data:`DOCUMENT_COLUMNS`: PostgreSQL
    formatted the timestamps and the id, so no row's timestamp is parsed in Python, nor an
    instance made (docs/benchmarks.md, Finding 15). The cursor's key of a document is
    :func:`document_key`.
    """
    loads = json.loads
    return [
        {
            "id": pk,
            "tenantId": tenant_id,
            "status": status,
            "version": version,
            "totalCents": total_cents,
            "currency": currency,
            # to_dict()'s sorted members (jsonb's own order is by length first).
            "metadata": {} if metadata == "{}" else dict(sorted(loads(metadata).items())),
            "createdAt": created_at,
            "updatedAt": updated_at,
            "confirmedAt": confirmed_at,
            "closedAt": closed_at,
        }
        for (
            pk,
            tenant_id,
            status,
            version,
            total_cents,
            currency,
            metadata,
            created_at,
            updated_at,
            confirmed_at,
            closed_at,
        ) in rows
    ]


def document_key(document: Mapping[str, Any]) -> tuple[datetime.datetime, uuid.UUID]:
    """The values of :data:`DOCUMENT_ORDERING`'s fields a document shows."""
    return datetime.datetime.fromisoformat(document["createdAt"]), uuid.UUID(document["id"])


@built_once
def _update_statement(
    connection: BaseDatabaseWrapper, model: type[Model], names: tuple[str, ...]
) -> tuple[str, WrittenFields]:
    """``UPDATE <table> SET <column> = %s, … WHERE <pk> = %s`` for the fields ``names``."""
    c = Columns(model, connection)
    fields = WrittenFields.of(connection, (_field(model, name) for name in names))
    assignments = ", ".join(f"{c[name]} = %s" for name in names)
    sql = f"UPDATE {c['table']} SET {assignments} WHERE {c[_pk_name(model)]} = %s"
    return sql, fields


def update_with_insert(
    using: str, obj: Model, update_fields: Sequence[str], new: Model, *, notify: str
) -> None:
    """``UPDATE`` the fields ``update_fields`` of ``obj``'s row and ``INSERT`` the new
    instance ``new`` (an event), then ``pg_notify(notify, '')``.

    On PostgreSQL one statement, one round trip: ``WITH changed AS (UPDATE … RETURNING 1),
    inserted AS (INSERT …) SELECT count(*), pg_notify(…) FROM changed``. Elsewhere (no
    notification) an ``UPDATE`` and an ``INSERT``. Either way, an update that finds no row
    raises ``DatabaseError``, as ``obj.save(update_fields=…)`` does; the caller's
    transaction is then to be rolled back (the insert with it). Call only after
    :func:`can_insert_raw` said yes for both models.
    """
    connection = connections[using]
    names = tuple(update_fields)
    update_sql, fields = _update_statement(connection, type(obj), names)
    pk = obj._meta.pk
    assert pk is not None
    update_params = [
        *save_params(connection, obj, fields, adding=False),
        pk.get_db_prep_save(obj.pk, connection),
    ]
    insert_sql, insert_fields = insert_statement(connection, type(new))
    params = [*update_params, *insert_params(connection, new, insert_fields)]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                f"WITH changed AS ({update_sql} RETURNING 1), inserted AS ({insert_sql}) "
                "SELECT count(*), pg_notify(%s, '') FROM changed",
                [*params, notify],
            )
            (updated, _) = cursor.fetchone()
        else:
            cursor.execute(update_sql, update_params)
            updated = cursor.rowcount
            if updated == 1:
                cursor.execute(insert_sql, params[len(update_params) :])
    if updated != 1:
        raise DatabaseError("The update of the row found no row (it was deleted).")
    mark_saved(new, using)


# -- a transition in one statement (PostgreSQL) ------------------------------------------

#: What a conditional transition finds the row by: its tenant, its id and what the client
#: holds of it — its version (the ``If-Match``) and the status the transition leaves —,
#: and its last change not later than the instant the transition writes: a change
#: committed after that instant was taken, before the statement ran (a client that
#: guessed the next version), leaves the row to the locked path, which takes its instant
#: with the row locked, so a later version never carries an earlier time (found in review).
_CURRENT = ("tenant_id", "pk", "version", "status", "updated_at")


@dataclasses.dataclass(frozen=True)
class _Transition:
    """:func:`update_if_current`'s statement for one model and one set of changed fields,
    with the fields of its parameters and what reading the changed row needs."""

    sql: str
    #: The ``SET`` fields, then the ``WHERE`` fields (:data:`_CURRENT`), in parameter order.
    fields: WrittenFields
    #: The event's columns but ``payload``, in parameter order (after ``fields``).
    event_fields: WrittenFields
    read: _Columns


@built_once
def _transition_statement(
    connection: BaseDatabaseWrapper, model: type[Model], names: tuple[str, ...]
) -> _Transition:
    """``WITH changed AS (UPDATE <order> SET <names> = %s, … WHERE tenant_id = %s AND
    <pk> = %s AND version = %s AND status = %s AND updated_at <= %s RETURNING <every
    column>), event AS
    (INSERT INTO <outbox> (…) SELECT %s, …, <the changed row's document>, … FROM changed)
    SELECT <every column of changed>, pg_notify(%s, '') FROM changed``."""
    c = Columns(model, connection)
    e = Columns(OutboxEvent, connection)
    read = _select_parts(connection, model)
    current = tuple(_pk_name(model) if name == "pk" else name for name in _CURRENT)
    outbox = tuple(OutboxEvent._meta.concrete_fields)
    # The payload is the document to_dict() gives of the changed row, built by PostgreSQL
    # from it: what the update left in columns it did not set (the total on close,
    # metadata, created_at, …) is known only there.
    payload = ", ".join(
        f"'{key}', {_document_value(c, name, prefix='changed.')}" for key, name in DOCUMENT_COLUMNS
    )
    selected = ", ".join(
        f"jsonb_build_object({payload})" if field.name == "payload" else "%s" for field in outbox
    )
    sql = (
        f"WITH changed AS (UPDATE {c['table']} "
        f"SET {', '.join(f'{c[name]} = %s' for name in names)} "
        f"WHERE {' AND '.join(f'{c[name]} = %s' for name in current[:-1])} "
        f"AND {c[current[-1]]} <= %s "
        f"RETURNING {c.listed(f.name for f in read.fields)}), "
        f"event AS (INSERT INTO {e['table']} ({e.listed(f.name for f in outbox)}) "
        f"SELECT {selected} FROM changed) "
        f"SELECT {c.listed((f.name for f in read.fields), prefix='changed.')}, "
        "pg_notify(%s, '') FROM changed"
    )
    return _Transition(
        sql,
        WrittenFields.of(connection, (_field(model, name) for name in (*names, *current))),
        WrittenFields.of(connection, (field for field in outbox if field.name != "payload")),
        read,
    )


def update_if_current(
    using: str,
    model: type[Model],
    current: Mapping[str, Any],
    changes: Mapping[str, Any],
    event: Model,
    *,
    notify: str,
) -> Any:
    """Set ``changes`` (field name → value) on the row of ``model`` whose ``tenant_id``,
    ``pk``, ``version`` and ``status`` are ``current``'s and whose ``updated_at`` is not
    later than ``current``'s (the instant ``changes`` write), write ``event`` with the changed
    row's ``to_dict()`` as its ``payload`` and ``pg_notify(notify, '')``: one statement,
    one round trip, atomic by itself in autocommit (PostgreSQL; docs/benchmarks.md,
    Finding 16). The changed row as an instance (``Model.from_db``), or ``None`` when no
    row was current — then nothing was written.

    A concurrent change of the row makes the ``UPDATE`` wait for it and then test the row
    as that change left it, so of N statements expecting one version one changes it. Only
    where :func:`can_fetch_documents` says the document is ``AbstractOrder.to_dict()``'s,
    :func:`can_insert_raw` says yes for both models and :func:`fills_fields_on_save` no.
    """
    connection = connections[using]
    statement = _transition_statement(connection, model, tuple(changes))
    values = [*changes.values(), *(current[name] for name in _CURRENT)]
    params = [
        *value_params(connection, statement.fields, values),
        *save_params(connection, event, statement.event_fields, adding=True),
        notify,
    ]
    with connection.cursor() as cursor:
        cursor.execute(statement.sql, params)
        changed = cursor.fetchone()
    if changed is None:
        return None
    return _instance(connection, using, model, statement.read, changed[:-1])


# -- the outbox relay (PostgreSQL) --------------------------------------------------------

#: The columns a claim reads, in ``outbox.claims.ClaimedEvent``'s order: its fields but
#: ``time``, which is ``created_at`` as the CloudEvent writes it (RFC 3339, UTC).
CLAIMED_COLUMNS = (
    "id",
    "tenant_id",
    "aggregate_type",
    "aggregate_id",
    "aggregate_version",
    "type",
    "payload",
    "extensions",
    "created_at",
    "attempts",
)

#: ``created_at`` as the CloudEvent's ``time`` (``django_orders.timestamps.rfc3339``),
#: formatted by PostgreSQL: the relay then decodes no timestamp per event.
_RFC3339 = """to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""


@dataclasses.dataclass(frozen=True)
class OutboxStatements:
    """The PostgreSQL relay's statements (``outbox.postgres.PostgresClaimStore``)."""

    #: The claim, by (dead events block their aggregate?, an explicit due-by time?).
    #: Params: token, lease interval, [due_by], limit → rows of :data:`CLAIMED_COLUMNS`
    #: (``id`` as text, ``created_at`` as RFC 3339 text, ``payload`` and ``extensions`` as
    #: JSON text) in publishing order: ``created_at``, ``id``.
    claim: Mapping[tuple[bool, bool], str]
    #: Params: status, published_at, ids (an array literal, :func:`uuid_array`), token →
    #: rowcount.
    published: str
    #: Params: ids (an array literal), statuses[], available_ats[], errors[], token, parked-until,
    #: dead-blocks → (retried, dead).
    failed: str
    #: Params: lease interval, ids (an array literal, :func:`uuid_array`), token → rowcount.
    renew: str
    #: As ``renew`` → the ids still held.
    reconfirm: str


# ORDER BY available_at, id walks the orders_outbox_pending partial index and stops after
# LIMIT rows, however large the backlog; the NOT EXISTS probe is served by
# orders_outbox_unfinished. Global order across aggregates does not matter: order within
# one is kept by the NOT EXISTS, which lets only its oldest unfinished event through
# (the same rule as OutboxQuerySet.unblocked(); tests/test_outbox_rules.py runs both).
#
# OFFSET 0 keeps the NOT EXISTS a correlated subplan (PostgreSQL does not turn a sublink
# with an OFFSET into a join): one index probe per candidate row. As an anti join, a
# burst of pending events on a table analysed while nothing was pending (the steady
# state: statistics say "no unfinished rows") was planned as a nested loop scanning the
# whole unfinished index per candidate — 100 x 20,000 rows, ~1 s per claim instead of
# ~5 ms, until autovacuum re-analysed the table.
#
# Leases use the database clock, statement_timestamp() (not now(), which would be frozen
# at the start of an enclosing transaction), so relays on several hosts agree.
#
# The claim's transaction commits without waiting for its WAL flush (PostgresClaimStore
# .claim says why that is safe): set_config(…, true) is SET LOCAL inside the statement, so
# that the claim is one statement in autocommit — one round trip instead of BEGIN, SET,
# the claim and COMMIT. Joined to every claimed row, the CTE is evaluated before any row
# is changed; a claim that changes none has nothing to flush.
#
# The claimed rows come back in publishing order (created_at, id), with created_at as the
# CloudEvent's RFC 3339 text and the id as text: the relay neither sorts them nor decodes
# a timestamp or a UUID per event (Django's timestamptz loader cost ~10 µs a row,
# docs/benchmarks.md, Finding 13).
_CLAIM = """
    WITH asynchronous_commit AS MATERIALIZED (
            SELECT set_config('synchronous_commit', 'off', true)
         ),
         claimed AS (
    UPDATE {table} AS o
       SET {lease_token} = %s::uuid,
           {leased_until} = statement_timestamp() + %s,
           {attempts} = o.{attempts} + 1
      FROM (
            SELECT e.{id}
              FROM {table} AS e
             WHERE e.{status} = '{PENDING}'
               AND e.{available_at} <= {due_by}
               AND (e.{leased_until} IS NULL OR e.{leased_until} < statement_timestamp())
               AND NOT EXISTS (
                     SELECT 1
                       FROM {table} AS b
                      WHERE b.{aggregate_id} = e.{aggregate_id}
                        AND b.{aggregate_type} = e.{aggregate_type}
                        AND b.{tenant_id} = e.{tenant_id}
                        AND b.{aggregate_version} < e.{aggregate_version}
                        AND {blocking}
                     OFFSET 0
                   )
             ORDER BY e.{available_at}, e.{id}
             LIMIT %s
               FOR UPDATE OF e SKIP LOCKED
           ) AS due, asynchronous_commit
     WHERE o.{id} = due.{id}
 RETURNING {returning}
    )
    SELECT {claimed} FROM claimed ORDER BY claimed.{created_at}, claimed.{id}
"""

# The write-back of every batch: one array parameter instead of 100 (the ORM's
# ``id IN (...)`` quoted each id on every batch), passed as the text of an array literal
# (uuid_array): a Python list would be quoted by the driver element by element. Fenced on
# the lease token.
_PUBLISHED = """
    UPDATE {table}
       SET {status} = %s, {published_at} = %s, {lease_token} = NULL, {leased_until} = NULL,
           {last_error} = ''
     WHERE {id} = ANY(%s::uuid[]) AND {lease_token} = %s::uuid
"""

# The failures of a batch in one statement, fenced on the lease token. The later events
# of each failed event's aggregate are deferred to its next attempt (parked while a dead
# event blocks them) — the rule of ClaimStore.defer_followers(); tests/test_outbox_rules.py
# runs both on the same data. They are other rows than the failed ones (a batch holds at
# most one event per aggregate), so the two updates of the statement never meet.
_FAILED = """
    WITH outcome (id, status, available_at, last_error) AS (
            SELECT * FROM unnest(%s::uuid[], %s::text[], %s::timestamptz[], %s::text[])
         ),
         failed AS (
            UPDATE {table} AS t
               SET {status} = outcome.status, {available_at} = outcome.available_at,
                   {last_error} = outcome.last_error, {lease_token} = NULL,
                   {leased_until} = NULL
              FROM outcome
             WHERE t.{id} = outcome.id AND t.{lease_token} = %s::uuid
         RETURNING t.{tenant_id}, t.{aggregate_type}, t.{aggregate_id},
                   t.{aggregate_version}, t.{status} = '{DEAD}' AS dead,
                   CASE WHEN t.{status} = '{DEAD}' THEN %s ELSE t.{available_at} END AS until
         ),
         deferred AS (
            UPDATE {table} AS later
               SET {available_at} = failed.until
              FROM failed
             WHERE later.{tenant_id} = failed.{tenant_id}
               AND later.{aggregate_type} = failed.{aggregate_type}
               AND later.{aggregate_id} = failed.{aggregate_id}
               AND later.{aggregate_version} > failed.{aggregate_version}
               AND later.{available_at} < failed.until
               AND later.{status} <> '{PUBLISHED}' AND later.{status} <> '{DEAD}'
               AND (%s OR NOT failed.dead)
         )
    SELECT count(*) FILTER (WHERE NOT dead), count(*) FILTER (WHERE dead) FROM failed
"""


def uuid_array(ids: Iterable[object]) -> str:
    """The ``%s::uuid[]`` parameter of the relay's statements for ``ids`` (UUIDs, or their
    text): an array literal, ``{id,id,…}``. A UUID's text needs no quoting in it, and
    PostgreSQL's cast checks each element."""
    return "{" + ",".join(map(str, ids)) + "}"


_RENEW = """
    UPDATE {table} SET {leased_until} = statement_timestamp() + %s
     WHERE {id} = ANY(%s::uuid[]) AND {lease_token} = %s::uuid
"""


@built_once
def outbox_statements(connection: BaseDatabaseWrapper) -> OutboxStatements:
    """The PostgreSQL relay's statements, built once."""
    columns = Columns(OutboxEvent, connection)
    status = OutboxEvent.Status
    names = {
        **{name: columns[name] for name in [*columns, "table"]},
        "PENDING": status.PENDING.value,
        "PUBLISHED": status.PUBLISHED.value,
        "DEAD": status.DEAD.value,
        "returning": columns.listed(CLAIMED_COLUMNS, prefix="o."),
        "claimed": ", ".join(
            _RFC3339.format(column=f"claimed.{columns[name]}")
            if name == "created_at"
            else f"claimed.{columns[name]}::text"
            if name == "id"
            else f"claimed.{columns[name]}"
            for name in CLAIMED_COLUMNS
        ),
    }
    claim = {
        (dead_blocks, due_by_given): _CLAIM.format_map(
            {
                **names,
                # Unfinished = neither published nor dead-and-ignored: the predicate
                # of the orders_outbox_unfinished index when dead events block.
                "blocking": f"b.{columns['status']} <> '{status.PUBLISHED.value}'"
                if dead_blocks
                else f"b.{columns['status']} = '{status.PENDING.value}'",
                "due_by": "%s" if due_by_given else "statement_timestamp()",
            }
        )
        for dead_blocks in (True, False)
        for due_by_given in (True, False)
    }
    renew = _RENEW.format_map(names)
    return OutboxStatements(
        claim=claim,
        published=_PUBLISHED.format_map(names),
        failed=_FAILED.format_map(names),
        renew=renew,
        reconfirm=f"{renew} RETURNING {columns['id']}",
    )


@built_once
def sequence_statement(connection: BaseDatabaseWrapper) -> str:
    """The next version of a host aggregate (``outbox.recording.record_event``): upsert its
    counter row and return the new value. Params: tenant, aggregate type, aggregate id.

    ``ON CONFLICT … DO UPDATE`` takes the row's lock and keeps it until the transaction
    ends, so a concurrent recorder of the same aggregate waits and then counts on from
    the committed value (PostgreSQL; SQLite ≥ 3.35 serialises writers anyway).
    """
    c = Columns(OutboxSequence, connection)
    keys = ("tenant_id", "aggregate_type", "aggregate_id")
    return (
        f"INSERT INTO {c['table']} ({c.listed((*keys, 'last_version'))}) "
        f"VALUES (%s, %s, %s, 1) ON CONFLICT ({c.listed(keys)}) "
        f"DO UPDATE SET {c['last_version']} = {c['table']}.{c['last_version']} + 1 "
        f"RETURNING {c['last_version']}"
    )


# -- idempotency keys ---------------------------------------------------------------------

#: What a key claim writes besides the tenant and the key (the insert and the takeover).
KEY_CLAIM_COLUMNS = (
    "method",
    "path",
    "fingerprint",
    "state",
    "response_status",
    "response_body",
    "response_headers",
    "created_at",
    "expires_at",
)
#: What the lookup of a live key reads (``expired`` is computed from ``expires_at``).
KEY_LOOKUP_COLUMNS = (
    "id",
    "expired",
    "fingerprint",
    "state",
    "response_status",
    "response_body",
    "response_headers",
)


@dataclasses.dataclass(frozen=True)
class IdempotencyStatements:
    """The ``Idempotency-Key`` statements (``django_orders.idempotency``)."""

    #: Params: tenant, key, *KEY_CLAIM_COLUMNS → RETURNING id, or no row on a conflict.
    insert: str
    #: Params: now, tenant, key → one row of :data:`KEY_LOOKUP_COLUMNS`.
    lookup: str
    #: Params: *KEY_CLAIM_COLUMNS, id, now → RETURNING id if still expired.
    takeover: str
    #: Params: state, status, body, headers, id.
    store: str


@built_once
def idempotency_statements(connection: BaseDatabaseWrapper) -> IdempotencyStatements:
    """The key table's statements for this connection's vendor, built once."""
    c = Columns(IdempotencyKey, connection)
    claimed = ("tenant_id", "key", *KEY_CLAIM_COLUMNS)
    assignments = ", ".join(f"{c[name]} = %s" for name in KEY_CLAIM_COLUMNS)
    lookup = {name: c[name] for name in KEY_LOOKUP_COLUMNS if name != "expired"}
    lookup["expired"] = f"{c['expires_at']} <= %s"
    return IdempotencyStatements(
        insert=(
            f"INSERT INTO {c['table']} ({c.listed(claimed)}) "
            f"VALUES ({', '.join(['%s'] * len(claimed))}) "
            f"ON CONFLICT ({c['tenant_id']}, {c['key']}) DO NOTHING RETURNING {c['id']}"
        ),
        lookup=(
            f"SELECT {', '.join(lookup[name] for name in KEY_LOOKUP_COLUMNS)} "
            f"FROM {c['table']} WHERE {c['tenant_id']} = %s AND {c['key']} = %s"
        ),
        takeover=(
            f"UPDATE {c['table']} SET {assignments} "
            f"WHERE {c['id']} = %s AND {c['expires_at']} <= %s RETURNING {c['id']}"
        ),
        store=(
            f"UPDATE {c['table']} SET {c['state']} = %s, {c['response_status']} = %s, "
            f"{c['response_body']} = %s, {c['response_headers']} = %s "
            f"WHERE {c['id']} = %s"
        ),
    )
