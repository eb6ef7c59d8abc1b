"""Row-level security: the database itself refuses cross-tenant rows
(docs/guide/row-level-security.md). PostgreSQL only, off by default.

With ``ROW_LEVEL_SECURITY`` on, every request of a tenant-scoped view runs in a transaction
that starts with ``set_config('django_orders.tenant', <tenant>, true)`` (local to that
transaction), and ``manage.py orders_rls install`` has put a policy on each of the package's
tenant tables::

    USING (tenant_id = current_setting('django_orders.tenant', true))
    WITH CHECK (the same)

so even ``Order.objects.all()`` in a tenant's request returns that tenant's rows only, and
writing a row of another tenant is an error. Outside a tenant's transaction no row is
visible at all (the setting is unset or empty): the default is to refuse.

The relay, the purge and the outbox status work across tenants: their commands set
``django_orders.cross_tenant`` to ``on`` for their connections' sessions, which a second
policy honours; or they connect as a role with ``BYPASSRLS``. Superusers and ``BYPASSRLS``
roles are never subject to policies: the application must connect as a role that is
neither for them to have any effect.

Importable before the app registry is ready (the tenancy module uses it): the models are
imported where they are needed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connections, router, transaction
from django.db.backends.signals import connection_created

from django_orders.conf import orders_settings

#: The setting (a PostgreSQL "customized option") the policies compare ``tenant_id`` with.
TENANT_SETTING = "django_orders.tenant"
#: ``on`` lets a session see and write every tenant's rows (the relay, the purge).
CROSS_TENANT_SETTING = "django_orders.cross_tenant"
TENANT_POLICY = "django_orders_tenant_isolation"
CROSS_TENANT_POLICY = "django_orders_cross_tenant"

__all__ = [
    "CROSS_TENANT_SETTING",
    "TENANT_SETTING",
    "allow_cross_tenant",
    "install_statements",
    "remove_statements",
    "tenant_tables",
    "tenant_transaction",
]


def enabled() -> bool:
    """Whether ``ROW_LEVEL_SECURITY`` is on."""
    return bool(orders_settings.ROW_LEVEL_SECURITY)


def tenant_tables() -> list[str]:
    """The package's tables with a ``tenant_id``: the order model's (a swapped one's, if
    any), the idempotency keys, the outbox events and the outbox's version sequences."""
    from django_orders.models import IdempotencyKey, OutboxEvent, OutboxSequence, get_order_model

    models = (get_order_model(), IdempotencyKey, OutboxEvent, OutboxSequence)
    return [model._meta.db_table for model in models]


def install_statements(tables: list[str] | None = None) -> list[str]:
    """The SQL that turns the policies on (idempotent: each policy is dropped first)."""
    statements = []
    for table in tables if tables is not None else tenant_tables():
        quoted = _quote(table)
        own = f"tenant_id = current_setting('{TENANT_SETTING}', true)"
        cross = f"current_setting('{CROSS_TENANT_SETTING}', true) = 'on'"
        statements += [
            f"ALTER TABLE {quoted} ENABLE ROW LEVEL SECURITY",
            # The table's owner is subject to the policies too (the application often
            # connects as the role that ran the migrations).
            f"ALTER TABLE {quoted} FORCE ROW LEVEL SECURITY",
            f"DROP POLICY IF EXISTS {TENANT_POLICY} ON {quoted}",
            f"CREATE POLICY {TENANT_POLICY} ON {quoted} USING ({own}) WITH CHECK ({own})",
            f"DROP POLICY IF EXISTS {CROSS_TENANT_POLICY} ON {quoted}",
            f"CREATE POLICY {CROSS_TENANT_POLICY} ON {quoted} USING ({cross}) WITH CHECK ({cross})",
        ]
    return statements


def remove_statements(tables: list[str] | None = None) -> list[str]:
    """The SQL that turns the policies off and drops them."""
    statements = []
    for table in tables if tables is not None else tenant_tables():
        quoted = _quote(table)
        statements += [
            f"DROP POLICY IF EXISTS {TENANT_POLICY} ON {quoted}",
            f"DROP POLICY IF EXISTS {CROSS_TENANT_POLICY} ON {quoted}",
            f"ALTER TABLE {quoted} NO FORCE ROW LEVEL SECURITY",
            f"ALTER TABLE {quoted} DISABLE ROW LEVEL SECURITY",
        ]
    return statements


def status(using: str = "default") -> list[dict[str, Any]]:
    """Per tenant table: whether RLS is enabled and forced, and the package's policies."""
    tables = tenant_tables()
    with connections[using].cursor() as cursor:
        cursor.execute(
            """
            SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,
                   coalesce(array_agg(p.polname ORDER BY p.polname)
                            FILTER (WHERE p.polname IS NOT NULL), '{}')
            FROM pg_class c
            LEFT JOIN pg_policy p ON p.polrelid = c.oid AND p.polname IN (%s, %s)
            WHERE c.relname = ANY(%s) AND c.relkind = 'r' AND pg_table_is_visible(c.oid)
            GROUP BY c.relname, c.relrowsecurity, c.relforcerowsecurity
            """,
            [TENANT_POLICY, CROSS_TENANT_POLICY, tables],
        )
        found = {row[0]: row[1:] for row in cursor.fetchall()}
    return [
        {
            "table": table,
            "enabled": found.get(table, (False,))[0],
            "forced": found.get(table, (False, False))[1],
            "policies": list(found.get(table, (False, False, []))[2]),
        }
        for table in tables
    ]


@contextmanager
def tenant_transaction(tenant_id: str, using: str | None = None) -> Iterator[str]:
    """A transaction on ``using`` (the order model's database by default) in which the
    policies let ``tenant_id``'s rows, and only those, be seen and written.

    The tenant-scoped views enter it for every request when ``ROW_LEVEL_SECURITY`` is on;
    call it yourself where code acts for a tenant outside a request (a task, a command).
    ``set_config(…, true)`` is local to the transaction: it ends with it, and a pooled
    connection never carries one request's tenant into another's. Yields ``using``.
    """
    if using is None:
        from django_orders.models import get_order_model

        using = router.db_for_write(get_order_model())
    with transaction.atomic(using=using):
        with connections[using].cursor() as cursor:
            cursor.execute("SELECT set_config(%s, %s, true)", [TENANT_SETTING, tenant_id])
        yield using


def allow_cross_tenant() -> None:
    """From now on, every PostgreSQL session of this process may see and write every
    tenant's rows: the commands of the relay, the purge and the outbox status call it.

    Sets ``django_orders.cross_tenant`` for the session on each connection as Django opens
    it (and on those already open), so the relay's threads and reconnections are covered.
    """
    connection_created.connect(_open_across_tenants, dispatch_uid=CROSS_TENANT_SETTING)
    for connection in connections.all(initialized_only=True):
        if connection.connection is not None:
            _open_across_tenants(type(connection), connection)


def _open_across_tenants(sender: Any, connection: Any, **kwargs: Any) -> None:
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        # Session-wide (false): it must outlive every transaction of a long-running relay.
        cursor.execute("SELECT set_config(%s, 'on', false)", [CROSS_TENANT_SETTING])


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
