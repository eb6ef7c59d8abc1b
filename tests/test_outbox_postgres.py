"""What only PostgreSQL's claim store does: heap-only claims, and a claim plan that stays
a per-candidate probe when the table's statistics are stale."""

from __future__ import annotations

import re
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_orders import services
from django_orders.models import OutboxEvent
from django_orders.outbox.claims import PARKED_UNTIL
from django_orders.outbox.postgres import PostgresClaimStore, claim_store_for
from tests.outbox_rows import bulk_events

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def test_a_claim_is_a_heap_only_update() -> None:
    """The outbox table leaves room on its pages (fillfactor 45, migrations 0002 and 0003) and a
    claim changes no indexed column, so PostgreSQL writes the leased row version on the
    same page without an entry in any of the four indexes (a HOT update)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT reloptions FROM pg_class WHERE relname = %s",
            [OutboxEvent._meta.db_table],
        )
        assert cursor.fetchone()[0] == ["fillfactor=45"]
    for _ in range(200):  # orders as the API writes them: the realistic row size
        services.create_order("shop-1", metadata={"note": "x" * 100})
    store = claim_store_for("default")
    with connection.cursor() as cursor:
        hot = "SELECT pg_stat_get_xact_tuples_hot_updated(%s::regclass)"
        cursor.execute(hot, [OutboxEvent._meta.db_table])
        before = cursor.fetchone()[0]
        claim = store.claim(200)
        assert claim is not None
        assert len(claim.events) == 200
        cursor.execute(hot, [OutboxEvent._meta.db_table])
        assert cursor.fetchone()[0] - before == 200


def test_a_claim_is_one_statement_whose_commit_does_not_wait_for_the_wal_flush() -> None:
    """The claim sets synchronous_commit off for its own transaction (the statement's
    set_config, PostgresClaimStore.claim says why that is safe): seen here inside the
    test's transaction, which the claim's setting lasts until. One statement: no BEGIN,
    SET or COMMIT of its own."""
    bulk_events(3, versions=1)
    store = claim_store_for("default")
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone()[0] == "on"
        with CaptureQueriesContext(connection) as queries:
            claim = store.claim(10)
        assert claim is not None
        assert len(claim.events) == 3
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone()[0] == "off"
    # The test's transaction adds a savepoint around it; a relay runs it in autocommit.
    statements = [q["sql"] for q in queries.captured_queries if "SAVEPOINT" not in q["sql"]]
    assert len(statements) == 1, statements
    assert "set_config('synchronous_commit', 'off', true)" in statements[0]


def test_the_claim_probes_per_candidate_even_with_stale_statistics() -> None:
    """The steady state of a production outbox: analysed while nothing was pending, then
    a burst. The claim must still probe the unfinished index per candidate row, not scan
    it whole per candidate (that plan took ~1 s per claim on 20,000 pending events)."""
    bulk_events(2000, versions=1)
    OutboxEvent.objects.update(status="published", published_at=timezone.now())
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE django_orders_outbox_event")
    bulk_events(2000, versions=1)
    store = claim_store_for("default")
    assert isinstance(store, PostgresClaimStore)
    sql, params = store.claim_sql(uuid.uuid4(), 100)
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "SubPlan" in plan, plan
    assert re.search(r"Index Cond: \(\(+aggregate_id\)?(::text)? = \(?e\.aggregate_id", plan), plan

    # The writes after the claim probe by primary key / aggregate, not the pending index.
    claim = store.claim(100)
    assert claim is not None
    assert "pkey" in store.events().held(claim.token, claim.ids).explain()
    followers = store.followers(claim.events[0], PARKED_UNTIL).explain()
    # An index of the aggregate's own events: the unfinished one, or the unique
    # (tenant, type, id, version) one — never a walk of the pending index.
    assert any(
        index in followers
        for index in ("orders_outbox_unfinished", "orders_outbox_aggregate_version_unique")
    ), followers
    assert "orders_outbox_pending" not in followers, followers
