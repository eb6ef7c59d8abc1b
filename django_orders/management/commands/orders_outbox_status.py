"""``manage.py orders_outbox_status``: the outbox backlog per tenant, the live relays, and
an exit status to alert on (docs/operations.md, "orders_outbox_status: what to alert on").

Without thresholds it only reports (exit 0). With ``--max-age``, ``--max-pending`` or
``--fail-on-dead`` it exits :data:`THRESHOLD_BREACHED` when one is breached, so cron or a
Kubernetes CronJob can alert on the status alone; with ``--min-relays``,
:data:`RELAYS_MISSING` when fewer relays are alive, so "no relay is running" is told from
"relays are behind"; :data:`OUTBOX_UNREADABLE` when the database cannot be read, so
"unhealthy" and "could not look" are told apart.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError
from django.utils import timezone

from django_orders import rls
from django_orders.models import RelayHeartbeat
from django_orders.outbox.heartbeat import database_now, live_relays
from django_orders.outbox.maintenance import outbox_status
from django_orders.timestamps import rfc3339

#: Exit status when a threshold is breached. Not 1, which is what Python gives an
#: uncaught exception and Django a plain ``CommandError``; not 2, argparse's usage error.
THRESHOLD_BREACHED = 3
#: Exit status when the outbox cannot be read (database down, table missing, …).
OUTBOX_UNREADABLE = 4
#: Exit status when fewer relays are alive than ``--min-relays`` asks (whatever else is
#: breached: with no relay running, a growing backlog is a consequence, not the cause).
RELAYS_MISSING = 5


class ThresholdBreached(CommandError):
    """The outbox is unhealthy by the thresholds given; the message says which.
    ``returncode`` is :data:`THRESHOLD_BREACHED`, or :data:`RELAYS_MISSING`."""

    def __init__(self, message: str, returncode: int = THRESHOLD_BREACHED) -> None:
        super().__init__(message, returncode=returncode)


def seconds(value: str) -> float:
    """An argparse type: a number of seconds, 0 or more (else a usage error, exit 2)."""
    number = float(value)
    if not number >= 0:  # also refuses nan
        raise ValueError(value)
    return number


def count(value: str) -> int:
    """An argparse type: a count, 0 or more."""
    number = int(value)
    if number < 0:
        raise ValueError(value)
    return number


class Command(BaseCommand):
    help = (
        "Pending, held-back and dead outbox events per tenant, the age of the oldest "
        "pending one, and the live relays. Exit status: 0 healthy, 3 a threshold breached, "
        "5 fewer live relays than --min-relays, 4 the database could not be read, 2 bad "
        "arguments."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Print JSON instead of a table.")
        parser.add_argument(
            "--max-age",
            type=seconds,
            metavar="SECONDS",
            help="Exit 3 if the oldest pending event (held-back ones aside) is older.",
        )
        parser.add_argument(
            "--max-pending",
            type=count,
            metavar="N",
            help="Exit 3 if more than N events are pending (held-back ones aside).",
        )
        parser.add_argument(
            "--fail-on-dead", action="store_true", help="Exit 3 if any event is dead."
        )
        parser.add_argument(
            "--min-relays",
            type=count,
            metavar="N",
            help="Exit 5 if fewer than N relays are alive (a heartbeat within OUTBOX_LEASE).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if rls.enabled():
            rls.allow_cross_tenant()  # every tenant's backlog (row-level security)
        now = timezone.now()
        try:
            rows = outbox_status(now=now)
            relays_at = database_now(RelayHeartbeat.objects.db)
            relays = live_relays(now=relays_at)
        except DatabaseError as exc:
            raise CommandError(
                f"Cannot read the outbox: {exc}".strip(),
                returncode=OUTBOX_UNREADABLE,
            ) from exc
        summary = report(rows, now)
        summary["relays"] = relay_report(relays, relays_at)
        if options["json"]:
            self.stdout.write(json.dumps(summary, indent=2))
        else:
            self.stdout.write(table(summary))
            self.stdout.write(relay_table(summary["relays"]))
        breaches = breached(summary, options)
        missing = options["min_relays"] is not None and len(relays) < options["min_relays"]
        if missing:
            breaches.insert(
                0, f"{len(relays)} live relay(s) (< --min-relays {options['min_relays']})"
            )
        if breaches:
            raise ThresholdBreached(
                "; ".join(breaches), returncode=RELAYS_MISSING if missing else THRESHOLD_BREACHED
            )


def report(rows: list[dict[str, Any]], now: dt.datetime) -> dict[str, Any]:
    """The JSON document: totals and one entry per tenant with unfinished events."""
    tenants = []
    for row in rows:
        oldest = row["oldest_pending"]
        tenants.append(
            {
                "tenant_id": row["tenant_id"],
                "pending": row["pending"],
                "held_back": row["held_back"],
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
    return {
        "pending": sum(t["pending"] for t in tenants),
        "held_back": sum(t["held_back"] for t in tenants),
        "dead": sum(t["dead"] for t in tenants),
        "oldest_pending_age_seconds": max(ages) if ages else None,
        "tenants": tenants,
    }


def relay_report(relays: list[RelayHeartbeat], now: dt.datetime) -> list[dict[str, Any]]:
    """The live relays as the JSON document lists them, oldest first."""
    return [
        {
            "id": str(relay.id),
            "host": relay.host,
            "pid": relay.pid,
            "publisher": relay.publisher,
            "started_at": rfc3339(relay.started_at),
            "last_beat_at": rfc3339(relay.last_beat_at),
            "last_beat_age_seconds": round(max(0.0, (now - relay.last_beat_at).total_seconds()), 3),
            "leased_batches": relay.leased_batches,
            "leased_events": relay.leased_events,
            "lease_tokens": relay.lease_tokens,
        }
        for relay in relays
    ]


def relay_table(relays: list[dict[str, Any]]) -> str:
    """The live relays as lines under the table."""
    if not relays:
        return "\nNo live relay (none has beaten within OUTBOX_LEASE)."
    lines = [f"\nLive relays: {len(relays)}"]
    for relay in relays:
        lines.append(
            f"  {relay['host']}:{relay['pid']}  {relay['publisher']}  "
            f"started {relay['started_at']}  last beat {age(relay['last_beat_age_seconds'])} ago  "
            f"holds {relay['leased_batches']} batch(es), {relay['leased_events']} event(s)"
        )
    return "\n".join(lines)


def table(summary: dict[str, Any]) -> str:
    """The report as a table, a line per tenant and a total."""
    tenants = summary["tenants"]
    if not tenants:
        return "Outbox is empty: nothing pending, nothing dead."
    width = max(len("tenant"), *(len(t["tenant_id"]) for t in tenants))
    lines = [f"{'tenant':<{width}}  {'pending':>8}  {'held back':>9}  {'dead':>6}  oldest pending"]
    for row in [*tenants, {**summary, "tenant_id": "total"}]:
        lines.append(
            f"{row['tenant_id']:<{width}}  {row['pending']:>8}  {row['held_back']:>9}  "
            f"{row['dead']:>6}  {age(row['oldest_pending_age_seconds'])}"
        )
    return "\n".join(lines)


def breached(summary: dict[str, Any], options: dict[str, Any]) -> list[str]:
    """What the thresholds of ``options`` find wrong with ``summary`` (empty: healthy)."""
    breaches = []
    oldest = summary["oldest_pending_age_seconds"]
    if options["max_age"] is not None and oldest is not None and oldest > options["max_age"]:
        breaches.append(
            f"the oldest pending event is {age(oldest)} old ({decimal(oldest)}s > --max-age "
            f"{decimal(options['max_age'])})"
        )
    if options["max_pending"] is not None and summary["pending"] > options["max_pending"]:
        breaches.append(
            f"{summary['pending']} events pending (> --max-pending {options['max_pending']})"
        )
    if options["fail_on_dead"] and summary["dead"]:
        breaches.append(
            f"{summary['dead']} dead event(s), holding back {summary['held_back']} (--fail-on-dead)"
        )
    return breaches


def decimal(number: float) -> str:
    """``300``, ``400.213``: plain notation, never ``1e+06``, at most 3 decimals."""
    return f"{number:.3f}".rstrip("0").rstrip(".")


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
