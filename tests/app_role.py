"""A database role like an application's, for the row-level security tests.

The suites connect as ``postgres``, a superuser, whom no policy binds. Inside
:func:`acting_as_app_role` every connection acts as a role with no superuser and no
``BYPASSRLS`` but every privilege on the tables (``SET ROLE``), as an application would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connection, connections
from django.db.backends.signals import connection_created

from django_orders import rls


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@contextmanager
def acting_as_app_role(created: Callable[[], None] | None = None) -> Iterator[str]:
    """Create the role (named after the test database), grant it the tables, call
    ``created`` (to wait for a replica to have it), and make every connection, open or
    opened later, act as it; undo it all after. Yields the quoted role name."""
    role = quote(f"{connection.settings_dict['NAME']}_app"[:63])
    with connection.cursor() as cursor:
        cursor.execute(
            "DO $$ BEGIN "
            f"CREATE ROLE {role} NOLOGIN NOSUPERUSER NOBYPASSRLS; "
            "EXCEPTION WHEN duplicate_object THEN NULL; END $$"
        )
        cursor.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
        cursor.execute(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}")
        cursor.execute(f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}")
    if created is not None:
        created()

    def act_as_role(sender: Any, connection: Any, **kwargs: Any) -> None:
        with connection.cursor() as cursor:
            cursor.execute(f"SET ROLE {role}")

    connection_created.connect(act_as_role, dispatch_uid="tests.app_role")
    for each in connections.all(initialized_only=True):
        each.close()  # reopened as the role
    try:
        yield role
    finally:
        connection_created.disconnect(dispatch_uid="tests.app_role")
        # The relay and purge commands opened their sessions across tenants: not beyond.
        connection_created.disconnect(dispatch_uid=rls.CROSS_TENANT_SETTING)
        for each in connections.all(initialized_only=True):
            each.close()
        with connection.cursor() as cursor:
            cursor.execute(f"DROP OWNED BY {role}")
            cursor.execute(f"DROP ROLE {role}")


@contextmanager
def as_superuser() -> Iterator[None]:
    """The default connection back as the superuser for the block (to look at every row)."""
    with connection.cursor() as cursor:
        cursor.execute("RESET ROLE")
    try:
        yield
    finally:
        connection.close()  # reopened as the role, if the test still acts as it
