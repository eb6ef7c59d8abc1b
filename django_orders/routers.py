"""Reads on streaming replicas (docs/guide/replicas.md).

:class:`ReplicaRouter` sends to a replica only the reads made inside :func:`replica_reads`
— the package's views enter it for the list and the GET of one order, nothing else. Every
write, the ``Idempotency-Key`` claim, the lock of a transition and any read a host makes
outside that block go where they went before: the next router, or ``default``.

A replica replays the primary's changes some milliseconds (or, under load, seconds) late.
What a client may then see, and what the views do about it:

- A client that has just written (a 2xx create, confirm or close) carries a signed cookie
  for ``READ_YOUR_WRITES_WINDOW``; its reads within the window go to the primary.
- An order the replica does not have (yet) is asked of the primary before answering 404.
- A GET whose ``If-None-Match`` names a version newer than the replica's is asked of the
  primary: a client never sees an order go back to a version older than one it was given.

Set up (settings)::

    DATABASES = {"default": {...}, "replica": {..., "TEST": {"MIRROR": "default"}}}
    DATABASE_ROUTERS = ["django_orders.routers.ReplicaRouter"]
    DJANGO_ORDERS = {"READ_REPLICAS": ["replica"]}
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.http import HttpRequest, HttpResponseBase

from django_orders.conf import orders_settings
from django_orders.context import bound

__all__ = ["ReplicaRouter", "choose_replica", "remember_write", "replica_reads"]

# The replica the current block reads from; None outside replica_reads() (the default).
_reading_from: ContextVar[str | None] = ContextVar("django_orders_reading_from", default=None)

# Binds the cookie's signature to its purpose: no other signed value of the site passes.
_COOKIE_SALT = "django_orders.routers.read_your_writes"


class ReplicaRouter:
    """A database router: reads inside :func:`replica_reads` go to its replica.

    Outside such a block it has no opinion (``None``), so the routers after it, or
    ``default``, decide as before. It never routes a write, and it keeps migrations off
    the replicas (``READ_REPLICAS``): they receive the schema from the primary's WAL.
    """

    def db_for_read(self, model: type[Any], **hints: Any) -> str | None:
        return _reading_from.get()

    def db_for_write(self, model: type[Any], **hints: Any) -> str | None:
        return None

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool | None:
        return None

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool | None:
        return False if db in orders_settings.READ_REPLICAS else None


@contextmanager
def replica_reads(alias: str | None) -> Iterator[None]:
    """Within the block, reads routed by :class:`ReplicaRouter` go to ``alias``.

    ``None`` is a no-op: the reads go where they would anyway (the primary). Only what is
    evaluated inside the block is affected — a queryset built inside and evaluated after
    it reads from wherever the router says then.
    """
    if alias is None:
        yield
        return
    with bound(_reading_from, alias):
        yield


def choose_replica(request: HttpRequest) -> str | None:
    """The replica for this request's reads, or ``None`` for the primary.

    ``None`` when no ``READ_REPLICAS`` are configured, and when the client wrote within
    ``READ_YOUR_WRITES_WINDOW`` (its signed cookie, set by :func:`remember_write`, is still
    valid): it reads its own writes from the primary. Otherwise one of the replicas, at
    random.
    """
    replicas = orders_settings.READ_REPLICAS
    if not replicas:
        return None
    if request.get_signed_cookie(
        orders_settings.READ_YOUR_WRITES_COOKIE,
        default=None,
        salt=_COOKIE_SALT,
        max_age=orders_settings.READ_YOUR_WRITES_WINDOW,
    ):
        return None
    return replicas[0] if len(replicas) == 1 else random.choice(replicas)


def remember_write(request: HttpRequest, response: HttpResponseBase) -> None:
    """Give a client that has just written the cookie of its read-your-writes window.

    Signed and timestamped (:meth:`~django.http.HttpResponse.set_signed_cookie`): only the
    server can start a window, and it ends after ``READ_YOUR_WRITES_WINDOW`` whatever the
    client does with the cookie. Nothing is set without ``READ_REPLICAS``.
    """
    if not orders_settings.READ_REPLICAS:
        return
    response.set_signed_cookie(
        orders_settings.READ_YOUR_WRITES_COOKIE,
        "1",
        salt=_COOKIE_SALT,
        max_age=orders_settings.READ_YOUR_WRITES_WINDOW,
        secure=request.is_secure(),
        httponly=True,
        samesite="Lax",
    )
