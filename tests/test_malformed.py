"""A battery of malformed requests against every endpoint (docs/api/README.md).

Each request gets a 4xx RFC 9457 problem with a ``code`` — never a 5xx (Django's test
client re-raises a view's exception, so a 500 fails the test loudly) — and writes nothing:
the rows of orders, idempotency keys and outbox events are counted before and after.

Where the contract names the status and code, the test asserts exactly those, so that a
request rejected for the wrong reason (a 404 from a mistyped URL, say) does not pass
silently. :class:`TestControl` proves the well-formed counterpart of each request succeeds.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pytest
from django.test import Client
from django.utils import timezone

from django_orders.models import IdempotencyKey, Order, OutboxEvent

pytestmark = pytest.mark.django_db

PROBLEM = "application/problem+json"
TENANT = "shop-1"
MAX_BODY = 65536


@dataclass
class Target:
    """One endpoint, as a well-formed request that the tests then spoil one way."""

    name: str
    method: str
    path: str
    body: Any  # a valid body (JSON-able), or None for none
    headers: dict[str, str] = field(default_factory=dict)
    success: int = 200


@pytest.fixture
def draft() -> Order:
    return Order.objects.create(tenant_id=TENANT, currency="USD")


@pytest.fixture
def confirmed() -> Order:
    return Order.objects.create(
        tenant_id=TENANT,
        currency="USD",
        status=Order.Status.CONFIRMED,
        version=2,
        total_cents=100,
        confirmed_at=timezone.now(),
    )


_key_counter = iter(range(1, 10**9))


def fresh_key() -> str:
    return f"malformed-{next(_key_counter)}"


@pytest.fixture
def targets(draft: Order, confirmed: Order) -> dict[str, Target]:
    return {
        "create": Target(
            "create", "POST", "/orders", {}, {"Idempotency-Key": fresh_key()}, success=201
        ),
        "confirm": Target(
            "confirm",
            "PATCH",
            f"/orders/{draft.id}/confirm",
            {"totalCents": 100},
            {"If-Match": '"1"'},
        ),
        "close": Target("close", "POST", f"/orders/{confirmed.id}/close", {}, {"If-Match": '"2"'}),
        "get": Target("get", "GET", f"/orders/{draft.id}", None),
        "list": Target("list", "GET", "/orders", None),
    }


BODY_ENDPOINTS = ["create", "confirm", "close"]
ALL_ENDPOINTS = [*BODY_ENDPOINTS, "get", "list"]


def counts() -> tuple[int, int, int]:
    return (Order.objects.count(), IdempotencyKey.objects.count(), OutboxEvent.objects.count())


def snapshot() -> list[tuple[Any, ...]]:
    return list(Order.objects.order_by("id").values_list("id", "status", "version", "total_cents"))


@contextmanager
def nothing_written() -> Iterator[None]:
    before, orders = counts(), snapshot()
    yield
    assert counts() == before, "rows were written"
    assert snapshot() == orders, "an order was changed"


def send(
    target: Target,
    *,
    body: Any = None,
    raw: bytes | None = None,
    content_type: str | None = "application/json",
    headers: dict[str, str | None] | None = None,
    method: str | None = None,
    path: str | None = None,
    tenant: str | None = TENANT,
    **extra: Any,
) -> Any:
    """Send ``target``'s request with some part replaced; ``None`` in headers drops one."""
    merged: dict[str, str | None] = {"X-Tenant-Id": tenant, **target.headers, **(headers or {})}
    sent = {name: value for name, value in merged.items() if value is not None}
    if raw is None:
        payload = target.body if body is None else body
        raw = b"" if payload is None else json.dumps(payload).encode()
    client = Client()
    if content_type is None:
        # The test client always sets CONTENT_TYPE; remove it to send none at all.
        extra["CONTENT_TYPE"] = ""
        content_type = ""
    return client.generic(
        method or target.method,
        path or target.path,
        raw,
        content_type=content_type,
        headers=sent,
        **extra,
    )


def assert_problem(response: Any, status: int | None = None, code: str | None = None) -> dict:
    """A 4xx problem+json with a ``code`` (and the given status and code, if any)."""
    assert 400 <= response.status_code < 500, (response.status_code, response.content[:500])
    if status is not None:
        assert response.status_code == status, response.content[:500]
    assert response["Content-Type"] == PROBLEM, response.content[:500]
    body: dict[str, Any] = json.loads(response.content)
    assert isinstance(body.get("code"), str), body
    assert body["code"]
    assert body["status"] == response.status_code
    if code is not None:
        assert body["code"] == code, body
    return body


def rejected(
    target: Target, status: int | None = None, code: str | None = None, **kwargs: Any
) -> dict:
    with nothing_written():
        response = send(target, **kwargs)
        return assert_problem(response, status, code)


class TestControl:
    """The well-formed requests the battery spoils do succeed."""

    @pytest.mark.parametrize("name", ALL_ENDPOINTS)
    def test_well_formed_request_succeeds(self, targets: dict[str, Target], name: str) -> None:
        target = targets[name]
        response = send(target)
        assert response.status_code == target.success, response.content[:500]


class TestBadJSON:
    @pytest.mark.parametrize("name", BODY_ENDPOINTS)
    @pytest.mark.parametrize(
        "raw",
        [
            pytest.param(b"{", id="open-brace"),
            pytest.param(b'{"totalCents": 10', id="truncated"),
            pytest.param(b'{"totalCents": 10,', id="truncated-after-comma"),
            pytest.param(b'{"totalCents": "1', id="truncated-string"),
            pytest.param(b"not json at all", id="text"),
            pytest.param(b"{'totalCents': 1}", id="single-quotes"),
            pytest.param(b'{"totalCents": 1,}', id="trailing-comma"),
            pytest.param(b'{"totalCents": NaN}', id="nan"),
            pytest.param(b'{"totalCents": Infinity}', id="infinity"),
            pytest.param(b'{"totalCents": 1e999}', id="float-overflow"),
            pytest.param(b'{"totalCents": 1, "totalCents": 2}', id="duplicate-key"),
            pytest.param(b"{}{}", id="two-documents"),
            pytest.param(b"   ", id="whitespace"),
            pytest.param(b'{"metadata": {"k": "\xff"}}', id="invalid-utf8"),
            pytest.param(b'{"metadata": {"k": "\xed\xa0\x80"}}', id="utf8-encoded-surrogate"),
            pytest.param(b'{"metadata": {"k": "a\\u0000b"}}', id="nul-in-value"),
            pytest.param(b'{"metadata": {"a\\u0000b": "v"}}', id="nul-in-key"),
            pytest.param(b'{"metadata": {"k": "\\ud800"}}', id="lone-high-surrogate"),
            pytest.param(b'{"metadata": {"k": "\\udc00x"}}', id="lone-low-surrogate"),
            pytest.param(b'{"metadata": {"\\ud83d": "v"}}', id="lone-surrogate-key"),
            pytest.param(b'{"currency": "\\ud800SD"}', id="lone-surrogate-currency"),
            pytest.param(b"[" * 60000, id="60000-brackets"),
            pytest.param(b'{"metadata": ' * 40 + b"{}" + b"}" * 40, id="40-objects"),
            pytest.param(b'{"totalCents": 1' + b"0" * 5000 + b"}", id="10^5000"),
            pytest.param(b'{"totalCents": -1' + b"0" * 5000 + b"}", id="-10^5000"),
            pytest.param('{"currency": "EUR"}'.encode("utf-16"), id="utf-16"),
        ],
    )
    def test_invalid_json(self, targets: dict[str, Target], name: str, raw: bytes) -> None:
        rejected(targets[name], 400, "invalid_json", raw=raw)


class TestBodySize:
    @pytest.mark.parametrize("name", BODY_ENDPOINTS)
    @pytest.mark.parametrize(
        "raw",
        [
            pytest.param(b"[" * 100000, id="100000-brackets"),
            pytest.param(b" " * (MAX_BODY + 1), id="cap-plus-one"),
            pytest.param(
                json.dumps({"metadata": {"k": "x" * MAX_BODY}}).encode(), id="big-metadata"
            ),
            pytest.param(b"{" + b" " * 3_000_000 + b"}", id="3MB-over-django-upload-limit"),
        ],
    )
    def test_too_large(self, targets: dict[str, Target], name: str, raw: bytes) -> None:
        rejected(targets[name], 413, "payload_too_large", raw=raw)

    @pytest.mark.parametrize("name", BODY_ENDPOINTS)
    def test_declared_length_too_large(self, targets: dict[str, Target], name: str) -> None:
        rejected(targets[name], 413, "payload_too_large", raw=b"{}", CONTENT_LENGTH="1000000")


class TestMediaType:
    @pytest.mark.parametrize("name", BODY_ENDPOINTS)
    @pytest.mark.parametrize(
        "content_type",
        [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=BoUnDaRy",
            "application/xml",
            "application/merge-patch+json",
            "application/octet-stream",
            "application/json; charset=latin-1",
            "application/json; charset=utf-16",
            None,  # a body with no Content-Type at all
        ],
    )
    def test_not_json(
        self, targets: dict[str, Target], name: str, content_type: str | None
    ) -> None:
        target = targets[name]
        raw = json.dumps(target.body).encode()
        rejected(target, 415, "unsupported_media_type", raw=raw, content_type=content_type)


class TestWrongTypesAndValues:
    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"totalCents": "100"}, "totalCents"),
            ({"totalCents": 1.5}, "totalCents"),
            ({"totalCents": 100.0}, "totalCents"),
            ({"totalCents": True}, "totalCents"),
            ({"totalCents": [1]}, "totalCents"),
            ({"totalCents": {"v": 1}}, "totalCents"),
            ({"totalCents": -1}, "totalCents"),
            ({"totalCents": -(2**63)}, "totalCents"),
            ({"totalCents": 2**63}, "totalCents"),
            ({"totalCents": 10**30}, "totalCents"),
            ({"currency": "usd"}, "currency"),
            ({"currency": "US"}, "currency"),
            ({"currency": "USDX"}, "currency"),
            ({"currency": "U$D"}, "currency"),
            ({"currency": "ÜSD"}, "currency"),
            ({"currency": 840}, "currency"),
            ({"currency": ""}, "currency"),
            ({"currency": None}, "currency"),
            ({"metadata": []}, "metadata"),
            ({"metadata": "k=v"}, "metadata"),
            ({"metadata": {"k": 1}}, "metadata"),
            ({"metadata": {"k": None}}, "metadata"),
            ({"metadata": {"k": {"nested": "v"}}}, "metadata"),
            ({"metadata": {"k": ["v"]}}, "metadata"),
            ({"metadata": {f"k{i}": "v" for i in range(51)}}, "metadata"),
            ({"metadata": {"k" * 41: "v"}}, "metadata"),
            ({"metadata": {"": "v"}}, "metadata"),
            ({"metadata": {"k": "v" * 501}}, "metadata"),
            ({"id": "0190b5a4-0000-7000-8000-000000000000"}, "id"),
            ({"status": "confirmed"}, "status"),
            ({"version": 7}, "version"),
            ({"tenantId": "shop-2"}, "tenantId"),
            ({"createdAt": "2020-01-01T00:00:00Z"}, "createdAt"),
            ({"total_cents": 100}, "total_cents"),
            ({"unknown": 1}, "unknown"),
        ],
    )
    def test_create(self, targets: dict[str, Target], body: dict, field: str) -> None:
        problem = rejected(targets["create"], 400, "validation_error", body=body)
        assert field in problem["errors"], problem

    @pytest.mark.parametrize(
        "body",
        [
            pytest.param([], id="array"),
            pytest.param([{"currency": "EUR"}], id="array-of-object"),
            pytest.param("order", id="string"),
            pytest.param(42, id="number"),
            pytest.param(True, id="boolean"),
        ],
    )
    @pytest.mark.parametrize("name", BODY_ENDPOINTS)
    def test_body_not_an_object(self, targets: dict[str, Target], name: str, body: Any) -> None:
        rejected(targets[name], 400, "validation_error", body=body)

    @pytest.mark.parametrize("name", BODY_ENDPOINTS)
    def test_null_body(self, targets: dict[str, Target], name: str) -> None:
        rejected(targets[name], 400, raw=b"null")

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({}, "totalCents"),
            ({"totalCents": None}, "totalCents"),
            ({"totalCents": "100"}, "totalCents"),
            ({"totalCents": 1.5}, "totalCents"),
            ({"totalCents": False}, "totalCents"),
            ({"totalCents": -1}, "totalCents"),
            ({"totalCents": 2**63}, "totalCents"),
            ({"totalCents": 2**64 + 1}, "totalCents"),
            ({"totalCents": 100, "currency": "EUR"}, "currency"),
            ({"totalCents": 100, "status": "closed"}, "status"),
            ({"totalCents": 100, "version": 2}, "version"),
            ({"totalCents": 100, "extra": True}, "extra"),
        ],
    )
    def test_confirm(self, targets: dict[str, Target], body: dict, field: str) -> None:
        problem = rejected(targets["confirm"], 400, "validation_error", body=body)
        assert field in problem["errors"], problem

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"status": "closed"}, "status"),
            ({"totalCents": 5}, "totalCents"),
            ({"reason": "done"}, "reason"),
        ],
    )
    def test_close(self, targets: dict[str, Target], body: dict, field: str) -> None:
        problem = rejected(targets["close"], 400, "validation_error", body=body)
        assert field in problem["errors"], problem


class TestIdempotencyKeyHeader:
    @pytest.mark.parametrize("name", BODY_ENDPOINTS)
    @pytest.mark.parametrize(
        "key",
        [
            pytest.param("k" * 256, id="256-chars"),
            pytest.param("k" * 300, id="300-chars"),
            pytest.param("k" * 10000, id="10000-chars"),
            pytest.param("", id="empty"),
            pytest.param('""', id="empty-sf-string"),
            pytest.param("ключ", id="cyrillic"),
            pytest.param("caf\xe9", id="latin-1"),
            pytest.param("\u2603", id="snowman"),
            pytest.param("a\x00b", id="nul"),
            pytest.param("a\tb", id="tab"),
            pytest.param("a\x7fb", id="del"),
            pytest.param('"ключ"', id="quoted-cyrillic"),
            pytest.param('"' + "k" * 300 + '"', id="quoted-300-chars"),
            pytest.param('"unterminated', id="sf-string-unterminated"),
            pytest.param('"a\\', id="sf-string-dangling-escape"),
            pytest.param('"a"b"', id="sf-string-unescaped-quote"),
            pytest.param('"\\x"', id="sf-string-bad-escape"),
            # What WSGI hands over for UTF-8 bytes: one Latin-1 character per byte.
            pytest.param("ключ".encode().decode("latin-1"), id="utf8-bytes-as-wsgi-gives"),
        ],
    )
    def test_invalid(self, targets: dict[str, Target], name: str, key: str) -> None:
        rejected(targets[name], 400, "invalid_idempotency_key", headers={"Idempotency-Key": key})

    def test_missing_on_create(self, targets: dict[str, Target]) -> None:
        rejected(
            targets["create"],
            400,
            "missing_idempotency_key",
            headers={"Idempotency-Key": None},
        )


class TestTenantHeader:
    @pytest.mark.parametrize("name", ALL_ENDPOINTS)
    @pytest.mark.parametrize(
        ("tenant", "code"),
        [
            pytest.param(None, "missing_tenant", id="missing"),
            pytest.param("", "missing_tenant", id="empty"),
            pytest.param("shöp", "invalid_tenant", id="latin-1"),
            pytest.param("магазин", "invalid_tenant", id="cyrillic"),
            pytest.param("shop 1", "invalid_tenant", id="space"),
            pytest.param("shop/1", "invalid_tenant", id="slash"),
            pytest.param("s" * 65, "invalid_tenant", id="65-chars"),
            pytest.param("shop\x00", "invalid_tenant", id="nul"),
            pytest.param("shop-1\n", "invalid_tenant", id="trailing-newline"),
            pytest.param(
                "shöp".encode().decode("latin-1"), "invalid_tenant", id="utf8-bytes-as-wsgi-gives"
            ),
        ],
    )
    def test_invalid(
        self, targets: dict[str, Target], name: str, tenant: str | None, code: str
    ) -> None:
        rejected(targets[name], 400, code, tenant=tenant)

    @pytest.mark.parametrize("name", ["confirm", "close", "get"])
    def test_another_tenants_order_is_not_found(
        self, targets: dict[str, Target], name: str
    ) -> None:
        rejected(targets[name], 404, "not_found", tenant="shop-2")


class TestIfMatchHeader:
    @pytest.mark.parametrize("name", ["confirm", "close"])
    @pytest.mark.parametrize(
        "value",
        [
            pytest.param("abc", id="token"),
            pytest.param('"1', id="unterminated"),
            pytest.param("", id="empty"),
            pytest.param("W/1", id="weak-bare"),
            pytest.param('"1" "2"', id="no-comma"),
            pytest.param('*, "1"', id="star-in-list"),
            pytest.param("\u2603", id="snowman"),
            pytest.param('"\u0432"', id="cyrillic-tag"),
            pytest.param("x" * 10000, id="10000-chars"),
        ],
    )
    def test_unparseable(self, targets: dict[str, Target], name: str, value: str) -> None:
        rejected(targets[name], 400, "invalid_if_match", headers={"If-Match": value})

    @pytest.mark.parametrize("name", ["confirm", "close"])
    @pytest.mark.parametrize(
        "value",
        [
            'W/"1"',
            'W/"2"',
            '"99"',
            "99",
            '"98" , "99"',
            '"caf\xe9"',  # obs-text: syntactically valid, never matches
            '"' + "ключ".encode().decode("latin-1") + '"',  # UTF-8 bytes, as WSGI gives them
            "1" * 5000,  # digits: a valid bare tag, not a version
            '"' + "9" * 5000 + '"',
        ],
    )
    def test_mismatch(self, targets: dict[str, Target], name: str, value: str) -> None:
        target = targets[name]
        current = 1 if name == "confirm" else 2
        problem = rejected(target, 412, "version_mismatch", headers={"If-Match": value})
        assert problem["currentVersion"] == current

    @pytest.mark.parametrize("name", ["confirm", "close"])
    def test_missing(self, targets: dict[str, Target], name: str) -> None:
        rejected(targets[name], 428, "precondition_required", headers={"If-Match": None})


class TestOrderIdInPath:
    @pytest.mark.parametrize(
        "order_id",
        [
            "not-a-uuid",
            "0",
            "00000000-0000-0000-0000-000000000000",
            "0190b5a4-0000-7000-8000-000000000000",
            "x" * 5000,
            "%00",
            "%E2%98%83",
            "%FF",
            "..",
        ],
    )
    @pytest.mark.parametrize(
        ("method", "suffix", "name"),
        [("GET", "", "get"), ("PATCH", "/confirm", "confirm"), ("POST", "/close", "close")],
    )
    def test_not_found(
        self, targets: dict[str, Target], order_id: str, method: str, suffix: str, name: str
    ) -> None:
        rejected(targets[name], 404, "not_found", path=f"/orders/{order_id}{suffix}")


class TestListQuery:
    @pytest.mark.parametrize(
        "query",
        [
            "limit=0",
            "limit=101",
            "limit=-1",
            "limit=abc",
            "limit=1.5",
            "limit=1e2",
            "limit=%20",
            "limit=" + "9" * 5000,
            "limit=%00",
            "limit=%E2%91%A0",  # ① is a digit to str.isdigit(), not to us
            "limit=%D9%A3",  # Arabic-Indic three: int() would accept it
        ],
    )
    def test_invalid_limit(self, targets: dict[str, Target], query: str) -> None:
        rejected(targets["list"], 400, "invalid_limit", path=f"/orders?{query}")

    @pytest.mark.parametrize(
        "query",
        [
            "status=bogus",
            "status=DRAFT",
            "status=draft,confirmed",
            "status=%00",
            "status=" + "x" * 5000,
            "status=%E2%98%83",
        ],
    )
    def test_invalid_filter(self, targets: dict[str, Target], query: str) -> None:
        rejected(targets["list"], 400, "invalid_filter", path=f"/orders?{query}")

    @pytest.mark.parametrize(
        "cursor",
        [
            "xyz",
            "x" * 10000,
            "%00",
            "%E2%98%83",
            "eyJrIjpbXX0",  # base64 of {"k":[]} with no signature
            "eyJrIjpbXX0:forged",
            "a:b:c:d",
            "....",
            "%FF%FE",
        ],
    )
    def test_forged_cursor(self, targets: dict[str, Target], cursor: str) -> None:
        rejected(targets["list"], 400, "invalid_cursor", path=f"/orders?cursor={cursor}")

    def _next_cursor(self) -> str:
        """A genuine next-page cursor of tenant shop-1, unfiltered; checked to work."""
        Order.objects.create(tenant_id=TENANT, currency="USD")
        client = Client(headers={"X-Tenant-Id": TENANT})
        response = client.get("/orders?limit=1")
        assert response.status_code == 200, response.content
        cursor = str(response.json()["nextCursor"])
        assert client.get(f"/orders?limit=1&cursor={quote(cursor)}").status_code == 200
        return cursor

    def test_tampered_cursor(self, targets: dict[str, Target]) -> None:
        cursor = self._next_cursor()
        for tampered in (
            cursor[:-1] + ("A" if cursor[-1] != "A" else "B"),
            ("A" if cursor[0] != "A" else "B") + cursor[1:],
            cursor[1:],
            cursor + "x",
            cursor[: len(cursor) // 2],
            cursor.swapcase(),
        ):
            path = f"/orders?cursor={quote(tampered)}"
            rejected(targets["list"], 400, "invalid_cursor", path=path)

    def test_cursor_of_another_tenant(self, targets: dict[str, Target]) -> None:
        path = f"/orders?cursor={quote(self._next_cursor())}"
        rejected(targets["list"], 400, "invalid_cursor", path=path, tenant="shop-2")

    @pytest.mark.parametrize("status", ["draft", "confirmed", "closed"])
    def test_cursor_of_another_filter(self, targets: dict[str, Target], status: str) -> None:
        path = f"/orders?cursor={quote(self._next_cursor())}&status={status}"
        rejected(targets["list"], 400, "invalid_cursor", path=path)

    def test_too_many_query_parameters(self, targets: dict[str, Target]) -> None:
        # Beyond DATA_UPLOAD_MAX_NUMBER_FIELDS Django raises TooManyFieldsSent.
        query = "&".join(f"p{i}=1" for i in range(1100))
        rejected(targets["list"], 400, path=f"/orders?{query}")


class TestMethods:
    @pytest.mark.parametrize(
        ("method", "path_of"),
        [
            ("PUT", "list"),
            ("PATCH", "list"),
            ("DELETE", "list"),
            ("PUT", "get"),
            ("POST", "get"),
            ("PATCH", "get"),
            ("DELETE", "get"),
            ("GET", "confirm"),
            ("POST", "confirm"),
            ("PUT", "confirm"),
            ("DELETE", "confirm"),
            ("GET", "close"),
            ("PATCH", "close"),
            ("PUT", "close"),
            ("DELETE", "close"),
            ("BREW", "list"),
            ("BREW", "get"),
            ("PROPFIND", "confirm"),
            ("TRACE", "close"),
        ],
    )
    def test_method_not_allowed(
        self, targets: dict[str, Target], method: str, path_of: str
    ) -> None:
        target = targets[path_of]
        rejected(target, 405, "method_not_allowed", method=method, raw=b"{}")


class TestIfNoneMatchIsNeverAnError:
    @pytest.mark.parametrize(
        "value", ["garbage", '"1', "\u2603", '*, "1"', "W/1", "x" * 10000, '"' + "1" * 5000 + '"']
    )
    def test_malformed_is_ignored(self, targets: dict[str, Target], value: str) -> None:
        with nothing_written():
            response = send(targets["get"], headers={"If-None-Match": value})
        assert response.status_code == 200
        assert response["ETag"] == '"1"'


class TestRetryAfterRejection:
    """A rejected request leaves no idempotency record: the fixed retry, same key, works."""

    @pytest.mark.parametrize(
        ("name", "spoil"),
        [
            ("create", {"raw": b"{"}),
            ("create", {"raw": b'{"metadata": {"k": "\\ud800"}}'}),
            ("create", {"body": {"totalCents": -1}}),
            ("create", {"raw": b" " * (MAX_BODY + 1)}),
            ("create", {"raw": b"{}", "content_type": "text/plain"}),
            ("confirm", {"raw": b"[" * 60000}),
            ("confirm", {"body": {"totalCents": "1"}}),
            ("confirm", {"headers": {"If-Match": '"7"'}}),
            ("close", {"headers": {"If-Match": "garbage"}}),
        ],
    )
    def test_same_key_then_succeeds(
        self, targets: dict[str, Target], name: str, spoil: dict[str, Any]
    ) -> None:
        target = targets[name]
        key = fresh_key()
        headers = {"Idempotency-Key": key, **spoil.pop("headers", {})}
        rejected(target, headers=headers, **spoil)
        response = send(target, headers={"Idempotency-Key": key})
        assert response.status_code == target.success, response.content[:500]
        assert "Idempotent-Replayed" not in response


def raw_http(
    port: int, method: str, path: bytes, headers: dict[str, bytes], body: bytes = b""
) -> tuple[int, str, bytes]:
    """One request over a real socket, header values sent as the exact bytes given."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.putrequest(method, path.decode("latin-1"), skip_accept_encoding=True)
        for name, value in headers.items():
            connection.putheader(name, value)
        if body or method in {"POST", "PATCH", "PUT"}:
            connection.putheader("Content-Type", b"application/json")
            connection.putheader("Content-Length", str(len(body)).encode())
        connection.endheaders(body or None)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type") or "", response.read()
    finally:
        connection.close()


@pytest.mark.django_db(transaction=True)
class TestOverRealHTTP:
    """Non-ASCII bytes in headers and paths as a real server decodes them (WSGI: Latin-1)."""

    @pytest.fixture
    def order(self) -> Order:
        return Order.objects.create(tenant_id=TENANT, currency="USD")

    @pytest.mark.parametrize(
        ("method", "path", "headers", "status", "code"),
        [
            ("POST", "/orders", {"X-Tenant-Id": "shöp".encode()}, 400, "invalid_tenant"),
            ("GET", "/orders", {"X-Tenant-Id": b"\xff\xfe"}, 400, "invalid_tenant"),
            (
                "POST",
                "/orders",
                {"X-Tenant-Id": b"shop-1", "Idempotency-Key": "ключ".encode()},
                400,
                "invalid_idempotency_key",
            ),
            (
                "POST",
                "/orders",
                {"X-Tenant-Id": b"shop-1", "Idempotency-Key": b"k" * 300},
                400,
                "invalid_idempotency_key",
            ),
            (
                "PATCH",
                "/orders/{id}/confirm",
                {"X-Tenant-Id": b"shop-1", "If-Match": "ключ".encode()},
                400,
                "invalid_if_match",
            ),
            (
                "PATCH",
                "/orders/{id}/confirm",
                {"X-Tenant-Id": b"shop-1", "If-Match": '"ключ"'.encode()},
                412,
                "version_mismatch",
            ),
            ("GET", "/orders/%D0%BA%D0%BB", {"X-Tenant-Id": b"shop-1"}, 404, "not_found"),
            ("GET", "/orders?cursor=%FF%FE", {"X-Tenant-Id": b"shop-1"}, 400, "invalid_cursor"),
            ("GET", "/orders?limit=%D9%A3", {"X-Tenant-Id": b"shop-1"}, 400, "invalid_limit"),
            ("BREW", "/orders", {"X-Tenant-Id": b"shop-1"}, 405, "method_not_allowed"),
        ],
    )
    def test_rejected(
        self,
        live_port: int,
        order: Order,
        method: str,
        path: str,
        headers: dict[str, bytes],
        status: int,
        code: str,
    ) -> None:
        target = path.replace("{id}", str(order.id)).encode()
        body = b'{"totalCents": 1}' if method == "PATCH" else b""
        with nothing_written():
            got_status, content_type, content = raw_http(live_port, method, target, headers, body)
        assert (got_status, content_type) == (status, PROBLEM), content[:300]
        assert json.loads(content)["code"] == code

    def test_oversized_body_is_413(self, live_port: int) -> None:
        headers = {"X-Tenant-Id": b"shop-1", "Idempotency-Key": b"big"}
        with nothing_written():
            status, content_type, content = raw_http(
                live_port, "POST", b"/orders", headers, b"[" * 100000
            )
        assert (status, content_type) == (413, PROBLEM), content[:300]
        assert json.loads(content)["code"] == "payload_too_large"

    def test_malformed_if_none_match_is_ignored(self, live_port: int, order: Order) -> None:
        headers = {"X-Tenant-Id": b"shop-1", "If-None-Match": "☃ garbage".encode()}
        status, _, _ = raw_http(live_port, "GET", f"/orders/{order.id}".encode(), headers)
        assert status == 200


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "path"),
    [("post", "/orders"), ("patch", "/orders/{id}/confirm"), ("post", "/orders/{id}/close")],
)
def test_a_body_without_content_length_is_refused_not_lost(method: str, path: str) -> None:
    """Chunked bodies are invisible to WSGI apps: 411, never an action on an empty body."""
    from django_orders.services import create_order

    order = create_order("shop-1")
    before = (Order.objects.count(), IdempotencyKey.objects.count(), OutboxEvent.objects.count())
    response = getattr(Client(), method)(
        path.format(id=order.id),
        data=b'{"totalCents": 5}',
        content_type="application/json",
        headers={"X-Tenant-Id": "shop-1", "Idempotency-Key": "k-411", "If-Match": '"1"'},
        HTTP_TRANSFER_ENCODING="chunked",
        CONTENT_LENGTH="",
    )
    assert response.status_code == 411
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "length_required"
    after = (Order.objects.count(), IdempotencyKey.objects.count(), OutboxEvent.objects.count())
    assert after == before


# Control characters as a client can put them in a path segment or a header value. Django's
# test client hands a header's text to the view as WSGI would (one character per byte).
CONTROL_CHARACTERS = ["\x00", "\x01", "\x08", "\x0b", "\x1b", "\x1f", "\x7f", "\r", "\n"]


def _seg_ids(char: str) -> str:
    return f"U+{ord(char):04X}"


class TestControlCharacters:
    """NUL and other control characters in every path segment and every header the API
    reads, with and without an Idempotency-Key: a 4xx problem, nothing written, and nothing
    of them reaches the database (a NUL there is a driver error: a 500)."""

    @pytest.mark.parametrize("char", CONTROL_CHARACTERS, ids=_seg_ids)
    @pytest.mark.parametrize("with_key", [True, False], ids=["key", "no-key"])
    @pytest.mark.parametrize(
        ("name", "template"),
        [
            ("get", "/orders/{seg}"),
            ("get", "/orders/{seg}/"),
            ("confirm", "/orders/{seg}/confirm"),
            ("confirm", "/orders/{seg}/confirm/"),
            ("close", "/orders/{seg}/close"),
            ("confirm", "/orders/a{seg}b/confirm"),
            ("close", "/orders/0190b5a4-0000-7000-8000-00000000000{seg}/close"),
        ],
    )
    def test_in_the_order_id_segment(
        self,
        targets: dict[str, Target],
        char: str,
        with_key: bool,
        name: str,
        template: str,
    ) -> None:
        headers = {"Idempotency-Key": fresh_key()} if with_key else {}
        path = template.format(seg=quote(char))
        rejected(targets[name], 404, "not_found", path=path, headers=headers)

    @pytest.mark.parametrize("char", CONTROL_CHARACTERS, ids=_seg_ids)
    @pytest.mark.parametrize("name", ALL_ENDPOINTS)
    def test_in_the_tenant_header(self, targets: dict[str, Target], name: str, char: str) -> None:
        rejected(targets[name], 400, "invalid_tenant", tenant=f"shop{char}1")

    @pytest.mark.parametrize("char", CONTROL_CHARACTERS, ids=_seg_ids)
    @pytest.mark.parametrize("name", BODY_ENDPOINTS)
    def test_in_the_idempotency_key(self, targets: dict[str, Target], name: str, char: str) -> None:
        for key in (f"k{char}1", f'"k{char}1"'):
            rejected(
                targets[name], 400, "invalid_idempotency_key", headers={"Idempotency-Key": key}
            )

    @pytest.mark.parametrize("char", CONTROL_CHARACTERS, ids=_seg_ids)
    @pytest.mark.parametrize("with_key", [True, False], ids=["key", "no-key"])
    @pytest.mark.parametrize("name", ["confirm", "close"])
    def test_in_if_match(
        self, targets: dict[str, Target], name: str, char: str, with_key: bool
    ) -> None:
        headers = {"If-Match": f'"1{char}"'}
        if with_key:
            headers["Idempotency-Key"] = fresh_key()
        rejected(targets[name], 400, "invalid_if_match", headers=headers)

    @pytest.mark.parametrize("char", CONTROL_CHARACTERS, ids=_seg_ids)
    def test_in_if_none_match_is_ignored(self, targets: dict[str, Target], char: str) -> None:
        with nothing_written():
            response = send(targets["get"], headers={"If-None-Match": f'"1{char}"'})
        assert response.status_code == 200

    @pytest.mark.parametrize("char", CONTROL_CHARACTERS, ids=_seg_ids)
    @pytest.mark.parametrize("with_key", [True, False], ids=["key", "no-key"])
    @pytest.mark.parametrize("name", BODY_ENDPOINTS)
    def test_in_the_content_type(
        self, targets: dict[str, Target], name: str, char: str, with_key: bool
    ) -> None:
        headers = {"Idempotency-Key": fresh_key()} if with_key else {}
        target = targets[name]
        rejected(
            target,
            415,
            "unsupported_media_type",
            raw=json.dumps(target.body).encode(),
            content_type=f"application/json{char}x",
            headers=headers,
        )

    @pytest.mark.parametrize("char", CONTROL_CHARACTERS, ids=_seg_ids)
    @pytest.mark.parametrize(
        ("query", "code"),
        [
            ("limit=1{c}", "invalid_limit"),
            ("status=draft{c}", "invalid_filter"),
            ("cursor=x{c}", "invalid_cursor"),
        ],
    )
    def test_in_the_query_string(
        self, targets: dict[str, Target], char: str, query: str, code: str
    ) -> None:
        path = "/orders?" + query.format(c=quote(char))
        rejected(targets["list"], 400, code, path=path)

    @pytest.mark.parametrize("char", CONTROL_CHARACTERS, ids=_seg_ids)
    def test_a_host_url_parameter_is_stored_percent_encoded(self, char: str) -> None:
        """A host view with the idempotency mixin and a free-text URL parameter: the key's
        path column holds the path percent-encoded, never the raw character."""
        response = Client().post(
            f"/host/notes/a{quote(char)}b/pin",
            data=b"{}",
            content_type="application/json",
            headers={"X-Tenant-Id": TENANT, "Idempotency-Key": f"pin-{ord(char)}"},
        )
        assert response.status_code == 201, response.content[:300]
        stored = IdempotencyKey.objects.get(key=f"pin-{ord(char)}")
        assert stored.path == f"/host/notes/a{quote(char)}b/pin"
