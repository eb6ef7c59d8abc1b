"""``manage.py orders_rls``: install, remove or show the row-level security policies on the
package's tenant tables (docs/guide/row-level-security.md). PostgreSQL only."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, connections, transaction

from django_orders import rls


class Command(BaseCommand):
    help = (
        "Row-level security on the orders tables: 'install' the policies (each request then "
        "sees its tenant's rows only, with ROW_LEVEL_SECURITY on), 'remove' them, show their "
        "'status', or print the 'sql' of install for a migration of your own."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=("install", "remove", "status", "sql"))
        parser.add_argument(
            "--database",
            default=DEFAULT_DB_ALIAS,
            help="The database to act on [default].",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        action, using = options["action"], options["database"]
        if action == "sql":
            for statement in rls.install_statements():
                self.stdout.write(f"{statement};")
            return
        if connections[using].vendor != "postgresql":
            raise CommandError("Row-level security needs PostgreSQL.")
        if action == "status":
            for table in rls.status(using):
                policies = ", ".join(table["policies"]) or "no policies"
                state = "forced" if table["forced"] else "on" if table["enabled"] else "off"
                self.stdout.write(f"{table['table']}: {state} ({policies})")
            return
        statements = rls.install_statements() if action == "install" else rls.remove_statements()
        # One transaction: the tables are protected all together, or not at all.
        with transaction.atomic(using=using), connections[using].cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
        done = "installed on" if action == "install" else "removed from"
        self.stdout.write(f"Row-level security {done} {', '.join(rls.tenant_tables())}.")
