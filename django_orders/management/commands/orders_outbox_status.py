"""``manage.py orders_outbox_status``: the outbox backlog per tenant (docs/operations.md).

What to page on: the age of the oldest pending event (the relay is down or cannot keep
up) and any dead event (something needs a person). See docs/operations.md.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from django_orders.outbox.maintenance import outbox_status
from django_orders.timestamps import rfc3339


class Command(BaseCommand):
    help = "Pending and dead outbox events per tenant, and the age of the oldest pending one."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Print JSON instead of a table.")

    def handle(self, *args: Any, **options: Any) -> None:
        now = timezone.now()
        tenants = []
        for row in outbox_status():
            oldest = row["oldest_pending"]
            tenants.append(
                {
                    "tenant_id": row["tenant_id"],
                    "pending": row["pending"],
                    "dead": row["dead"],
                    "oldest_pending_at": rfc3339(oldest),
                    "oldest_pending_age_seconds": (
                        round((now - oldest).total_seconds(), 3) if oldest else None
                    ),
                }
            )
        ages = [
            t["oldest_pending_age_seconds"]
            for t in tenants
            if t["oldest_pending_age_seconds"] is not None
        ]
        summary = {
            "pending": sum(t["pending"] for t in tenants),
            "dead": sum(t["dead"] for t in tenants),
            "oldest_pending_age_seconds": max(ages) if ages else None,
            "tenants": tenants,
        }
        if options["json"]:
            self.stdout.write(json.dumps(summary, indent=2))
            return
        if not tenants:
            self.stdout.write("Outbox is empty: nothing pending, nothing dead.")
            return
        width = max(len("tenant"), *(len(t["tenant_id"]) for t in tenants))
        self.stdout.write(f"{'tenant':<{width}}  {'pending':>8}  {'dead':>6}  oldest pending")
        for t in tenants:
            self.stdout.write(
                f"{t['tenant_id']:<{width}}  {t['pending']:>8}  {t['dead']:>6}  "
                f"{age(t['oldest_pending_age_seconds'])}"
            )
        self.stdout.write(
            f"{'total':<{width}}  {summary['pending']:>8}  {summary['dead']:>6}  "
            f"{age(summary['oldest_pending_age_seconds'])}"
        )


def age(seconds: float | None) -> str:
    """``-``, ``42s``, ``3m12s``, ``5h03m``, ``2d04h``."""
    if seconds is None:
        return "-"
    whole = max(0, int(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"
