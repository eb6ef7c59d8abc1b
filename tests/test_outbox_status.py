"""docs/operations.md, "orders_outbox_status: what to alert on": the report, what counts
as pending and what as held back, the thresholds and their exit status, and the cost of
the query (EXPLAIN on PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_orders import services
from django_orders.management.commands.orders_outbox_status import (
    OUTBOX_UNREADABLE,
    THRESHOLD_BREACHED,
    ThresholdBreached,
    age,
    decimal,
)
from django_orders.models import Order, OutboxEvent
from django_orders.outbox.claims import PARKED_UNTIL
from django_orders.outbox.maintenance import outbox_status, requeue
from django_orders.timestamps import rfc3339
from tests.relay_runs import ROOT, relay_env, relay_once

FAILING = "tests.relay_publishers.FailingPublisher"


def status(*args: str) -> str:
    out = StringIO()
    call_command("orders_outbox_status", *args, stdout=out)
    return out.getvalue()


def report(*args: str) -> dict[str, Any]:
    return json.loads(status("--json", *args))


def breach(*args: str) -> str:
    """The message of the ``ThresholdBreached`` the command raises with ``args``."""
    with pytest.raises(ThresholdBreached) as raised:
        status(*args)
    assert raised.value.returncode == THRESHOLD_BREACHED == 3
    return str(raised.value)


def make_old(order: Order, **age: float) -> None:
    OutboxEvent.objects.filter(aggregate_id=order.id).update(
        created_at=timezone.now() - dt.timedelta(**age)
    )


def order_with_three_events(tenant: str) -> Order:
    """created, confirmed and closed: versions 1, 2, 3 of one order, all pending."""
    order = services.create_order(tenant)
    with transaction.atomic():
        services.confirm_order(services.get_order_for_update(tenant, order.id), total_cents=100)
    with transaction.atomic():
        services.close_order(services.get_order_for_update(tenant, order.id))
    return order


def dead_order(tenant: str) -> Order:
    """An order whose version 1 is dead, holding back versions 2 and 3: version 2 parked
    by the relay when version 1 died, version 3 written afterwards (not parked)."""
    order = services.create_order(tenant)
    with transaction.atomic():
        services.confirm_order(services.get_order_for_update(tenant, order.id), total_cents=100)
    assert relay_once(FAILING, permanent=True) == 1
    with transaction.atomic():
        services.close_order(services.get_order_for_update(tenant, order.id))
    events = OutboxEvent.objects.filter(aggregate_id=order.id).order_by("aggregate_version")
    assert [(e.status, e.available_at >= PARKED_UNTIL) for e in events] == [
        ("dead", False),
        ("pending", True),
        ("pending", False),
    ]
    return order


# -- the report --------------------------------------------------------------------------


@pytest.mark.django_db
def test_status_of_an_empty_outbox() -> None:
    assert status() == (
        "Outbox is empty: nothing pending, nothing dead.\n"
        "\nNo live relay (none has beaten within OUTBOX_LEASE).\n"
    )
    assert report("--max-age", "0", "--max-pending", "0", "--fail-on-dead") == {
        "pending": 0,
        "held_back": 0,
        "dead": 0,
        "oldest_pending_age_seconds": None,
        "tenants": [],
        "relays": [],
    }


@pytest.mark.django_db
def test_status_per_tenant() -> None:
    for tenant in ("shop-1", "shop-1", "shop-2", "shop-3"):
        services.create_order(tenant)
    OutboxEvent.objects.filter(tenant_id="shop-1").update(
        created_at=timezone.now() - dt.timedelta(minutes=3)
    )
    OutboxEvent.objects.filter(tenant_id="shop-2").update(status="dead")
    OutboxEvent.objects.filter(tenant_id="shop-3").update(status="published")

    summary = report()

    assert summary["pending"] == 2
    assert summary["dead"] == 1
    assert 180 <= summary["oldest_pending_age_seconds"] < 240
    assert [(t["tenant_id"], t["pending"], t["dead"]) for t in summary["tenants"]] == [
        ("shop-1", 2, 0),
        ("shop-2", 0, 1),
    ]
    assert summary["tenants"][1]["oldest_pending_at"] is None

    table = status().splitlines()
    assert table[0].split() == ["tenant", "pending", "held", "back", "dead", "oldest", "pending"]
    assert table[1].split()[:4] == ["shop-1", "2", "0", "0"]
    assert table[1].split()[4].startswith("3m")
    assert table[2].split() == ["shop-2", "0", "0", "1", "-"]
    assert table[3].split()[:4] == ["total", "2", "0", "1"]


@pytest.mark.django_db
def test_the_json_document_has_totals_and_one_entry_per_tenant() -> None:
    dead_order("shop-2")
    order = services.create_order("shop-1")
    make_old(order, seconds=30)

    summary = report()

    created = OutboxEvent.objects.get(aggregate_id=order.id).created_at
    assert set(summary) == {
        "pending",
        "held_back",
        "dead",
        "oldest_pending_age_seconds",
        "tenants",
        "relays",
    }
    assert summary["tenants"][0] == {
        "tenant_id": "shop-1",
        "pending": 1,
        "held_back": 0,
        "dead": 0,
        "oldest_pending_at": rfc3339(created),
        "oldest_pending_age_seconds": summary["tenants"][0]["oldest_pending_age_seconds"],
    }
    assert 30 <= summary["tenants"][0]["oldest_pending_age_seconds"] < 90
    assert summary["tenants"][1] == {
        "tenant_id": "shop-2",
        "pending": 0,
        "held_back": 2,
        "dead": 1,
        "oldest_pending_at": None,
        "oldest_pending_age_seconds": None,
    }
    assert (summary["pending"], summary["held_back"], summary["dead"]) == (1, 2, 1)


def test_age_formatting() -> None:
    assert [age(None), age(5.9), age(192), age(5 * 3600 + 180), age(2 * 86400 + 4 * 3600)] == [
        "-",
        "5s",
        "3m12s",
        "5h03m",
        "2d04h",
    ]


def test_numbers_in_messages_are_plain() -> None:
    assert [decimal(300.0), decimal(400.2134), decimal(1e6), decimal(0.5)] == [
        "300",
        "400.213",
        "1000000",
        "0.5",
    ]


# -- held back, not pending --------------------------------------------------------------


@pytest.mark.django_db
def test_events_behind_a_dead_event_are_held_back_apart_from_pending() -> None:
    blocked = dead_order("shop-1")
    make_old(blocked, hours=3)
    fresh = services.create_order("shop-1")
    make_old(fresh, seconds=5)

    summary = report()

    # The two later events of the dead one's order are held back, whether parked when it
    # died or written afterwards; only the fresh order's event is pending, and the age is
    # its age, not the three hours of the held-back ones.
    assert (summary["pending"], summary["held_back"], summary["dead"]) == (1, 2, 1)
    assert 5 <= summary["oldest_pending_age_seconds"] < 60
    (tenant,) = summary["tenants"]
    assert (tenant["pending"], tenant["held_back"], tenant["dead"]) == (1, 2, 1)
    assert 5 <= tenant["oldest_pending_age_seconds"] < 60

    table = status().splitlines()
    assert table[1].split()[:4] == ["shop-1", "1", "2", "1"]
    assert table[2].split()[:4] == ["total", "1", "2", "1"]


@pytest.mark.django_db
def test_held_back_events_have_no_age_and_do_not_breach_max_age() -> None:
    make_old(dead_order("shop-1"), hours=3)

    summary = report("--max-age", "60")

    assert summary["oldest_pending_age_seconds"] is None
    assert summary["held_back"] == 2


@pytest.mark.django_db
def test_requeueing_the_dead_event_makes_its_order_pending_again() -> None:
    dead_order("shop-1")
    requeue(OutboxEvent.objects.all())

    summary = report()
    assert (summary["pending"], summary["held_back"], summary["dead"]) == (3, 0, 0)


@pytest.mark.django_db
def test_events_deferred_behind_a_failing_event_count_as_pending() -> None:
    # Documented choice: an event waiting for its retry, and the later events of its
    # order deferred to that retry, are being worked on — pending, with their age.
    order = order_with_three_events("shop-1")
    assert relay_once(FAILING) == 1
    events = OutboxEvent.objects.filter(aggregate_id=order.id).order_by("aggregate_version")
    first, *later = events
    assert (first.status, first.attempts) == ("pending", 1)
    assert all(e.available_at == first.available_at for e in later)  # deferred to its retry
    make_old(order, minutes=10)

    summary = report()

    assert (summary["pending"], summary["held_back"], summary["dead"]) == (3, 0, 0)
    assert summary["oldest_pending_age_seconds"] >= 600
    assert "--max-age 300" in breach("--max-age", "300")


@pytest.mark.django_db
def test_a_dead_event_holds_back_only_its_own_tenants_aggregate() -> None:
    # An aggregate is (tenant, type, id): another tenant's events under the same id are
    # not behind this tenant's dead one.
    order = dead_order("shop-1")
    OutboxEvent.objects.create(
        tenant_id="shop-2",
        aggregate_type="order",
        aggregate_id=order.id,
        aggregate_version=2,
        type="order.confirmed",
        payload={},
    )

    summary = report()

    assert [(t["tenant_id"], t["pending"], t["held_back"]) for t in summary["tenants"]] == [
        ("shop-1", 0, 2),
        ("shop-2", 1, 0),
    ]


@pytest.mark.django_db
@override_settings(DJANGO_ORDERS={"OUTBOX_DEAD_BLOCKS_ORDER": False})
def test_without_dead_blocks_order_only_parked_events_are_held_back() -> None:
    # With the setting off a dead event holds nothing back: the events behind it are
    # published past it, so they are pending. Parked ones (left from when it was on)
    # wait for a relay to release them: held back until then.
    order = order_with_three_events("shop-1")
    events = OutboxEvent.objects.filter(aggregate_id=order.id)
    events.filter(aggregate_version=1).update(status="dead")
    events.filter(aggregate_version=2).update(available_at=PARKED_UNTIL)

    summary = report()

    assert (summary["pending"], summary["held_back"], summary["dead"]) == (1, 1, 1)


# -- thresholds and the exit status ------------------------------------------------------


@pytest.mark.django_db
def test_max_age_breaches_on_the_oldest_pending_event() -> None:
    make_old(services.create_order("shop-1"), minutes=10)

    assert status("--max-age", "601")  # not older than 601 s: healthy, no exception
    message = breach("--max-age", "300")
    assert message.startswith("the oldest pending event is 10m")
    assert "> --max-age 300" in message


@pytest.mark.django_db
def test_max_pending_breaches_on_more_pending_events_than_allowed() -> None:
    make_old(dead_order("shop-3"), hours=1)  # 2 held back: not counted
    services.create_order("shop-1")
    services.create_order("shop-2")

    assert status("--max-pending", "2")
    assert breach("--max-pending", "1") == "2 events pending (> --max-pending 1)"


@pytest.mark.django_db
def test_fail_on_dead_breaches_on_any_dead_event() -> None:
    services.create_order("shop-1")
    assert status("--fail-on-dead")  # pending, none dead: healthy
    OutboxEvent.objects.update(status="published")

    dead_order("shop-2")
    services.create_order("shop-1")
    services.create_order("shop-1")

    assert breach("--fail-on-dead") == "1 dead event(s), holding back 2 (--fail-on-dead)"
    # Every breached threshold is named, and the report is printed all the same.
    out = StringIO()
    with pytest.raises(ThresholdBreached, match=r"^2 events pending .*; 1 dead event"):
        call_command("orders_outbox_status", "--max-pending", "0", "--fail-on-dead", stdout=out)
    total = next(line for line in out.getvalue().splitlines() if line.startswith("total"))
    assert total.split()[:4] == ["total", "2", "2", "1"]


@pytest.mark.django_db
def test_thresholds_must_be_numbers_of_zero_or_more() -> None:
    for args in (["--max-age", "-1"], ["--max-age", "nan"], ["--max-pending", "1.5"]):
        with pytest.raises(CommandError, match="invalid"):
            status(*args)


def run_status(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "django", "orders_outbox_status", *args],
        env={**relay_env(), **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_exit_status_as_a_process() -> None:
    make_old(services.create_order("shop-1"), minutes=10)

    healthy = run_status("--max-age", "3600", "--fail-on-dead")
    assert healthy.returncode == 0, healthy.stderr
    assert healthy.stderr == ""

    breached = run_status("--max-age", "300", "--json")
    assert breached.returncode == THRESHOLD_BREACHED, breached.stderr
    assert json.loads(breached.stdout)["pending"] == 1  # the report is still printed
    assert breached.stderr.startswith("ThresholdBreached: the oldest pending event is 10m")

    usage = run_status("--max-age", "soon")
    assert usage.returncode == 2, usage.stderr
    assert "argument --max-age: invalid seconds value: 'soon'" in usage.stderr

    if connection.vendor == "postgresql":
        url = relay_env()["DATABASE_URL"]
        unreadable = run_status(DATABASE_URL=f"{url}_does_not_exist")
    else:
        unreadable = run_status(ORDERS_SQLITE_PATH=str(ROOT / "no-such-dir" / "db.sqlite3"))
    assert unreadable.returncode == OUTBOX_UNREADABLE == 4, unreadable.stderr
    assert unreadable.stderr.startswith("CommandError: Cannot read the outbox: ")
    assert unreadable.stdout == ""


# -- the cost: unfinished rows only (EXPLAIN on PostgreSQL) ---------------------------------


def plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan, *(n for child in plan.get("Plans", []) for n in plan_nodes(child))]


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_status_query_reads_the_unfinished_rows_through_their_partial_index() -> None:
    table = OutboxEvent._meta.db_table
    with connection.cursor() as cursor:
        # 60,000 published events, statistics taken while nothing else was there (the
        # steady state) ...
        cursor.execute(
            f"""
            INSERT INTO {table} (id, tenant_id, aggregate_type, aggregate_id,
                aggregate_version, type, payload, created_at, status, attempts,
                available_at, last_error, published_at)
            SELECT gen_random_uuid(), 'shop-' || (i % 10), 'order', gen_random_uuid(), 1,
                   'order.created', '{{}}'::jsonb, now(), 'published', 1, now(), '', now()
              FROM generate_series(1, 60000) AS i
            """
        )
        cursor.execute(f"ANALYZE {table}")
    # ... then a few pending, parked, held-back, deferred and dead ones.
    dead_order("shop-1")  # v1 dead, v2 parked, v3 due (held back)
    order_with_three_events("shop-2")  # due
    waiting = order_with_three_events("shop-3")  # waiting for a retry
    OutboxEvent.objects.filter(aggregate_id=waiting.id).update(
        available_at=timezone.now() + dt.timedelta(minutes=1)
    )
    with CaptureQueriesContext(connection) as captured:
        rows = outbox_status()
    assert [(r["pending"], r["held_back"], r["dead"]) for r in rows] == [
        (0, 2, 1),
        (3, 0, 0),
        (3, 0, 0),
    ]
    (query,) = captured.captured_queries

    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {query['sql']}")
        (raw,) = cursor.fetchone()
    plan = (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]
    nodes = plan_nodes(plan)
    text = json.dumps(plan, indent=1)
    # No sequential scan; the one index used is the partial one without published rows,
    # for the unfinished rows and for the probe "is an earlier event of the order dead?".
    assert not [n for n in nodes if n["Node Type"] == "Seq Scan"], text
    assert {n["Index Name"] for n in nodes if "Index Name" in n} == {"orders_outbox_unfinished"}, (
        text
    )
    # The probe runs once per due pending event (shop-1 v3, shop-2 v1-v3), not for the
    # parked, the waiting or the dead ones.
    (probe,) = [n for n in nodes if n.get("Parent Relationship") == "SubPlan"]
    assert probe["Actual Loops"] == 4, text
    # Pages touched: a handful, against the ~1,000 that the published rows fill.
    total = int(plan["Shared Hit Blocks"]) + int(plan["Shared Read Blocks"])
    assert total < 100, text
