"""Raw statements of the write hot path, built once per (database vendor, table) and cached.

Why (docs/benchmarks.md, Finding 3): the ORM compiles every ``save()`` and ``update()``
anew, about 0.3-0.5 ms of Python each, three times per idempotent create (the order, its
event, the stored response). These helpers build the same ``INSERT`` once and adapt the
values through the model's own fields (``field.get_db_prep_save``), so a ``JSONField``,
``UUIDField`` or ``DateTimeField`` is stored exactly as the ORM would store it, on
PostgreSQL and on SQLite alike.

Django's ``pre_save`` / ``post_save`` signals are part of what ``Model.save()`` does: when
a receiver is connected for a model, :func:`can_insert_raw` says no and callers use
``save()`` instead, so hosts listening to those signals see no difference.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, Model
from django.db.models.signals import post_save, pre_save

# (vendor, db_table) -> (INSERT statement, the concrete fields in its column order)
_INSERTS: dict[tuple[str, str], tuple[str, tuple[Field[Any, Any], ...]]] = {}


def can_insert_raw(*models: type[Model]) -> bool:
    """True unless a ``pre_save`` / ``post_save`` receiver listens to one of ``models``."""
    return not any(
        pre_save.has_listeners(model) or post_save.has_listeners(model) for model in models
    )


def insert_statement(
    connection: BaseDatabaseWrapper, model: type[Model]
) -> tuple[str, tuple[Field[Any, Any], ...]]:
    """``INSERT INTO <table> (<every concrete column>) VALUES (%s, …)`` and its fields."""
    meta = model._meta
    cache_key = (connection.vendor, meta.db_table)
    cached = _INSERTS.get(cache_key)
    if cached is not None:
        return cached
    qn = connection.ops.quote_name
    fields = tuple(meta.concrete_fields)
    sql = (
        f"INSERT INTO {qn(meta.db_table)} ({', '.join(qn(str(f.column)) for f in fields)}) "
        f"VALUES ({', '.join(['%s'] * len(fields))})"
    )
    _INSERTS[cache_key] = (sql, fields)
    return sql, fields


def insert_params(
    connection: BaseDatabaseWrapper, obj: Model, fields: Sequence[Field[Any, Any]]
) -> list[Any]:
    """The values of ``obj`` for :func:`insert_statement`, adapted as the ORM adapts them."""
    return [field.get_db_prep_save(field.pre_save(obj, True), connection) for field in fields]


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


def insert_objects(using: str, objs: Sequence[Model], *, then: str | None = None) -> None:
    """INSERT the new instances ``objs``, in one round trip where the driver allows it.

    ``then`` is a statement without parameters (a ``NOTIFY``) sent after them, in the same
    ``cursor.execute`` on PostgreSQL (Finding 4: each round trip is a wait on the server).
    Call only after :func:`can_insert_raw` said yes for their models.
    """
    connection = connections[using]
    inserts: list[tuple[str, list[Any]]] = []
    for obj in objs:
        sql, fields = insert_statement(connection, type(obj))
        inserts.append((sql, insert_params(connection, obj, fields)))
    with connection.cursor() as cursor:
        if can_batch_statements(connection):
            statements = [sql for sql, _ in inserts] + ([then] if then else [])
            cursor.execute(
                "; ".join(statements), [p for _, obj_params in inserts for p in obj_params]
            )
        else:
            for sql, obj_params in inserts:
                cursor.execute(sql, obj_params)
            if then:
                cursor.execute(then)
    for obj in objs:
        mark_saved(obj, using)
