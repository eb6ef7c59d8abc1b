"""Seeding the benchmark database fast: ``INSERT … SELECT generate_series`` in SQL.

Rows look like the package's own: UUIDv7-shaped ids (millisecond timestamp prefix, version
7, variant bits), microsecond timestamps, status/version/timestamps consistent with each
other. Every second row shares its ``created_at`` with its neighbour, so the keyset's
``id`` tie-breaker is exercised too.
"""

from __future__ import annotations

from harness import psql

ORDER_TABLE = "django_orders_order"
TABLES = ("django_orders_order", "django_orders_idempotency_key", "django_orders_outbox_event")

LIST_TENANT = "bench-list"
GET_TENANT = "bench-get"
CONFIRM_TENANT = "bench-confirm"
CLOSE_TENANT = "bench-close"
CREATE_TENANT = "bench-create"
REF_CREATE_TENANT = "bench-refcreate"

_UUID7 = (
    "(lpad(to_hex((extract(epoch FROM ts) * 1000)::bigint), 12, '0') || '7' "
    "|| substr(h, 1, 3) || '8' || substr(h, 4, 15))::uuid"
)


def truncate() -> None:
    psql("TRUNCATE " + ", ".join(TABLES))


def insert_orders(
    tenant_sql: str,
    count: int,
    *,
    step_us: int,
    statuses: bool,
    status: str = "draft",
    base: str = "now() - interval '1 day'",
) -> None:
    """Insert ``count`` orders; ``tenant_sql`` is an SQL expression of ``g`` (1…count).

    Row ``g`` is ``(g / 2) * step_us`` microseconds older than ``base`` (pairs tie).
    With ``statuses`` the rows cycle through draft, confirmed and closed; without, they
    are all ``status``.
    """
    status = (
        "CASE g % 3 WHEN 0 THEN 'draft' WHEN 1 THEN 'confirmed' ELSE 'closed' END"
        if statuses
        else f"'{status}'"
    )
    psql(f"""
        INSERT INTO {ORDER_TABLE} (id, tenant_id, status, version, total_cents, currency,
                                   metadata, created_at, updated_at, confirmed_at, closed_at)
        SELECT {_UUID7}, tenant, st,
               CASE st WHEN 'draft' THEN 1 WHEN 'confirmed' THEN 2 ELSE 3 END,
               CASE st WHEN 'draft' THEN NULL ELSE 1000 + g END,
               'USD', '{{"source": "seed"}}'::jsonb, ts, ts,
               CASE WHEN st <> 'draft' THEN ts END,
               CASE WHEN st = 'closed' THEN ts END
        FROM (
            SELECT g, {tenant_sql} AS tenant, {status} AS st,
                   md5(g::text || random()::text) AS h,
                   {base} - ((g / 2) * {step_us} + 123) * interval '1 microsecond' AS ts
            FROM generate_series(1, {count}) AS g
        ) AS s
    """)


def seed_api(
    *,
    list_orders: int,
    confirm_drafts: int,
    close_confirmed: int = 0,
    get_orders: int = 1000,
    noise_orders: int = 100_000,
) -> None:
    """The API benchmark's data: one big list tenant, noise tenants around it, drafts to
    confirm, confirmed orders to close, a thousand orders to read."""
    truncate()
    insert_orders(f"'{LIST_TENANT}'", list_orders, step_us=1000, statuses=True)
    insert_orders("'bench-noise-' || (g % 50)", noise_orders, step_us=1700, statuses=True)
    insert_orders(f"'{GET_TENANT}'", get_orders, step_us=1000, statuses=True)
    insert_orders(f"'{CONFIRM_TENANT}'", confirm_drafts, step_us=1000, statuses=False)
    if close_confirmed:
        insert_orders(
            f"'{CLOSE_TENANT}'", close_confirmed, step_us=1000, statuses=False, status="confirmed"
        )
    psql("VACUUM ANALYZE")


def tenant_ids(tenant: str, *, status: str | None = None) -> list[str]:
    cond = f" AND status = '{status}'" if status else ""
    out = psql(
        f"SELECT id FROM {ORDER_TABLE} WHERE tenant_id = '{tenant}'{cond} "
        "ORDER BY created_at DESC, id DESC"
    )
    return out.splitlines()


def row_at_depth(tenant: str, depth: int) -> tuple[str, str]:
    """``(created_at ISO, id)`` of the ``depth``-th row (1-based) of the tenant's list."""
    out = psql(
        "SELECT to_char(created_at AT TIME ZONE 'UTC', "
        '\'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"\'), id '
        f"FROM {ORDER_TABLE} WHERE tenant_id = '{tenant}' "
        f"ORDER BY created_at DESC, id DESC OFFSET {depth - 1} LIMIT 1"
    )
    stamp, pk = out.split("|")
    return stamp, pk
