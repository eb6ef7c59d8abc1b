"""EXPLAIN helpers: the statement a list page sends, its plan, and what a keyset walk's plan
must look like (one backward index range scan from the cursor). PostgreSQL only."""

from __future__ import annotations

import json
from typing import Any

from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient


def list_page_sql(tenant: str, params: dict[str, Any]) -> tuple[str, list[str]]:
    """The one statement ``GET /orders`` sends for ``params``, and the ids it returned."""
    client = APIClient(HTTP_X_TENANT_ID=tenant)
    with CaptureQueriesContext(connection) as captured:
        response = client.get("/orders", params)
    assert response.status_code == 200, response.content
    (query,) = captured.captured_queries
    return query["sql"], [item["id"] for item in response.json()["items"]]


def explain(sql: str) -> tuple[str, dict[str, Any]]:
    """The text plan and the JSON plan (with ANALYZE and BUFFERS) of ``sql``."""
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {sql}")
        text = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}")
        (raw,) = cursor.fetchone()
    plan = (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]
    return text, plan


def nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan, *(n for child in plan.get("Plans", []) for n in nodes(child))]


def blocks(plan: dict[str, Any]) -> int:
    return int(plan["Shared Hit Blocks"]) + int(plan["Shared Read Blocks"])


def assert_keyset_index_scan(text: str, plan: dict[str, Any], index: str) -> None:
    all_nodes = nodes(plan)
    assert [n["Node Type"] for n in all_nodes] == ["Limit", "Index Scan"], text
    scan = all_nodes[1]
    assert scan["Index Name"] == index, text
    assert scan["Scan Direction"] == "Backward", text
    assert "ROW(created_at, id) < ROW(" in scan["Index Cond"], text
    assert "Filter" not in scan, text  # nothing re-checked row by row
    assert "Sort" not in text
    assert f"Index Scan Backward using {index}" in text
