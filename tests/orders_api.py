"""Helpers for the HTTP API tests: a client speaking JSON as the tenant ``shop-1``."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connection
from django.test import Client

PROBLEM = "application/problem+json"
TENANT = "shop-1"

_keys = itertools.count(1)


def new_key() -> str:
    """A fresh Idempotency-Key for this test run."""
    return f"key-{next(_keys)}"


class OrdersClient(Client):
    """A Django test client that sends JSON bodies and ``X-Tenant-Id`` by default."""

    def __init__(self, tenant: str | None = TENANT, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tenant = tenant

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | str | None = None,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> Any:
        all_headers = {"X-Tenant-Id": self.tenant} if self.tenant else {}
        all_headers.update(headers or {})
        data: Any = raw if raw is not None else ("" if body is None else json.dumps(body))
        return self.generic(method, path, data, content_type=content_type, headers=all_headers)

    def create(self, body: Any = None, *, key: str | None = None, **kwargs: Any) -> Any:
        headers = {
            "Idempotency-Key": new_key() if key is None else key,
            **kwargs.pop("headers", {}),
        }
        return self.call("POST", "/orders", body, headers=headers, **kwargs)

    def confirm(self, order_id: str, body: Any, *, if_match: str | None = '"1"', **kw: Any) -> Any:
        headers = dict(kw.pop("headers", {}))
        if if_match is not None:
            headers["If-Match"] = if_match
        return self.call("PATCH", f"/orders/{order_id}/confirm", body, headers=headers, **kw)

    def close_order(
        self, order_id: str, body: Any = None, *, if_match: str | None = '"2"', **kw: Any
    ) -> Any:
        headers = dict(kw.pop("headers", {}))
        if if_match is not None:
            headers["If-Match"] = if_match
        return self.call("POST", f"/orders/{order_id}/close", body, headers=headers, **kw)


def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    """The response is an RFC 9457 problem with ``status`` and ``code``; returns the body."""
    assert response.status_code == status, response.content
    assert response["Content-Type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    assert body["status"] == status
    assert body["type"] == "about:blank"
    assert body["title"]
    assert body["detail"]
    return body


@contextmanager
def sqlite_write_lock_held() -> Iterator[None]:
    """While active, a second SQLite connection holds the write lock and this one's busy
    timeout is 100 ms: a write here fails with "database is locked"."""
    other = connection.copy()
    other.ensure_connection()
    other.connection.execute("BEGIN IMMEDIATE")
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA busy_timeout = 100")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA busy_timeout = 20000")
        other.connection.rollback()
        other.close()


@contextmanager
def failing_trigger(table: str, event: str, condition: str) -> Iterator[None]:
    """While active, a database trigger makes ``event`` (``"INSERT"`` / ``"UPDATE"``) on
    ``table`` fail for rows matching ``condition`` (SQL on ``NEW``), *after* the row is
    written: the way to prove that a failure late in a transaction leaves nothing behind.
    Statements, not Python mocks, so the failure is the database's own."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "CREATE OR REPLACE FUNCTION orders_test_fail() RETURNS trigger "
                "LANGUAGE plpgsql AS $$ BEGIN "
                "RAISE EXCEPTION 'forced failure (test trigger)'; END $$"
            )
            cursor.execute(
                f"CREATE TRIGGER orders_test_fail AFTER {event} ON {table} "
                f"FOR EACH ROW WHEN ({condition}) EXECUTE FUNCTION orders_test_fail()"
            )
        else:
            cursor.execute(
                f"CREATE TRIGGER orders_test_fail AFTER {event} ON {table} "
                f"WHEN {condition} BEGIN SELECT RAISE(ABORT, 'forced failure'); END"
            )
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute(f"DROP TRIGGER IF EXISTS orders_test_fail ON {table}")
                cursor.execute("DROP FUNCTION IF EXISTS orders_test_fail()")
            else:
                cursor.execute("DROP TRIGGER IF EXISTS orders_test_fail")
