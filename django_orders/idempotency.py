"""``Idempotency-Key`` for unsafe requests (IETF draft "The Idempotency-Key HTTP Header
Field"; docs/guide/idempotency.md), as a mixin for any DRF ``APIView``.

How it works, in one database transaction per request:

1. After DRF's own checks (authentication, the tenant permission, throttles), the key's
   syntax is checked and the body parsed (400 / 413 / 415 come before the key is looked at).
2. The request's fingerprint is computed: SHA-256 of the method, the path without its
   trailing slash or query, and the body as canonical JSON.
3. A transaction is opened and ONE statement claims the (tenant, key) slot::

       INSERT … ON CONFLICT (tenant_id, key) DO NOTHING RETURNING id

   A new key returns its row id: the view runs in the same transaction and the response
   (2xx only) is stored in the row before commit. A key already there returns nothing: its
   row is read and the stored response replayed (same fingerprint) or the request refused
   with 422 ``idempotency_key_reused``; a replay writes nothing, so it takes no row lock
   and no transaction id (docs/benchmarks.md, Finding 2). Only an expired key is taken
   over, by ``UPDATE … WHERE id = %s AND expires_at <= now RETURNING id``. While another
   request holds the slot uncommitted, the INSERT waits for it (a unique-index wait), then
   sees its committed row, or takes the slot if it rolled back (the UPDATE likewise waits
   for a concurrent takeover and then matches nothing): a second side effect is
   impossible, whatever the timing. If the host's ``lock_timeout`` ends the wait first,
   the answer is 409 ``idempotency_key_in_use`` with ``Retry-After``.

   A view may defer the claim to its writes (``defers_idempotency_claim()``; the
   package's create of a plainly valid body on PostgreSQL): the same ``INSERT``, storing
   the response, then guards the writes in their statement, which write only if it
   inserted; a key already there writes nothing and is then looked up as above
   (docs/benchmarks.md, Finding 14). When that statement is all the request writes and
   nothing after it can change the answer (``writes_in_one_statement()``), it runs
   without a transaction of its own: it is atomic by itself. The transaction opens only
   if the key was there. A request without a key whose handler's writes are one
   statement (the package's transitions with a single strong ``If-Match``) likewise runs
   without one (docs/benchmarks.md, Finding 16).
4. A non-2xx answer or an exception rolls the transaction back: no key, no side effect, so
   the client fixes the request and retries with the same key.

Works under ``ATOMIC_REQUESTS = True`` (the transaction is then a savepoint of the request's)
on PostgreSQL and on SQLite ≥ 3.35 (``RETURNING``).

One module past 400 lines, and :class:`IdempotencyMixin` with more methods than a class
here usually has, on purpose: the four steps above are one protocol whose race-safety
rests on their order, hooked into DRF's ``dispatch`` / ``initial`` / ``handle_exception`` /
``finalize_response`` and offering a view the deferred claim's hooks; a reader checking
it finds every step here.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
from dataclasses import dataclass
from typing import Any

from django.core.files.uploadedfile import UploadedFile
from django.db import DatabaseError, OperationalError, connections, router, transaction
from django.http import HttpResponse, HttpResponseBase
from django.utils import timezone
from django.utils.datastructures import MultiValueDict
from django.utils.encoding import escape_uri_path
from rest_framework.request import Request
from rest_framework.response import Response

from django_orders import sql
from django_orders.conf import orders_settings
from django_orders.models import IDEMPOTENCY_KEY_MAX_LENGTH, IdempotencyKey
from django_orders.problems import (
    LOCK_NOT_AVAILABLE,
    Problem,
    concurrent_conflict,
    is_concurrency_failure,
    is_sqlite_busy,
    sqlstate,
)

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Response headers stored with the key and replayed (docs/guide/idempotency.md).
STORED_HEADERS = ("Location", "ETag", "Content-Type")
RETRY_AFTER_SECONDS = 1


def parse_key(value: str) -> str:
    """The key from the header's value: a bare token or an RFC 8941 sf-string.

    Raises a 400 ``invalid_idempotency_key`` problem for an empty key, one longer than
    255 characters, a malformed sf-string, or anything but printable ASCII.
    """
    if value.startswith('"'):
        value = _unquote_sf_string(value)
    if not value:
        raise _invalid_key("The Idempotency-Key header is empty.")
    if len(value) > IDEMPOTENCY_KEY_MAX_LENGTH:
        raise _invalid_key(
            f"The Idempotency-Key is longer than {IDEMPOTENCY_KEY_MAX_LENGTH} characters."
        )
    if not all(" " <= char <= "~" for char in value):
        raise _invalid_key("The Idempotency-Key must be printable ASCII.")
    return value


def _unquote_sf_string(value: str) -> str:
    # RFC 8941 §3.3.3: DQUOTE *( unescaped / "\" ( DQUOTE / "\" ) ) DQUOTE
    if len(value) < 2 or not value.endswith('"'):
        raise _invalid_key("The Idempotency-Key is an unterminated string.")
    chars: list[str] = []
    inner = iter(value[1:-1])
    for char in inner:
        if char == "\\":
            escaped = next(inner, "")
            if escaped not in ('"', "\\"):
                raise _invalid_key("The Idempotency-Key has an invalid escape.")
            chars.append(escaped)
        elif char == '"':
            raise _invalid_key("The Idempotency-Key has an unescaped quote.")
        else:
            chars.append(char)
    return "".join(chars)


def _invalid_key(detail: str) -> Problem:
    return Problem(400, "invalid_idempotency_key", detail)


def request_fingerprint(method: str, path: str, data: Any) -> str:
    """SHA-256 (hex) of the method, the path without trailing slash, and the body.

    The body is canonical JSON (sorted keys, no whitespace), so ``{"a":1,"b":2}`` and
    ``{ "b": 2, "a": 1 }`` are the same request; so are ``/orders`` and ``/orders/``.
    """
    body = json.dumps(
        _canonical(data),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
        default=_canonical_upload,
    )
    material = "\n".join((method.upper(), path.rstrip("/"), body))
    return hashlib.sha256(material.encode()).hexdigest()


def _canonical(data: Any) -> Any:
    """Form data (a host's multipart or urlencoded view) as a JSON-able mapping of lists."""
    if isinstance(data, MultiValueDict):
        return {key: data.getlist(key) for key in data}
    return data


def _canonical_upload(value: Any) -> Any:
    """An uploaded file by name, size and content hash, so a different file is a different
    request; the file is rewound for the view."""
    if isinstance(value, UploadedFile):
        digest = hashlib.sha256()
        for chunk in value.chunks():
            digest.update(chunk)
        value.seek(0)
        return {"name": value.name, "size": value.size, "sha256": digest.hexdigest()}
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


@dataclass
class _Claim:
    """The key slot this request holds in the open transaction."""

    record_id: int
    using: str


@dataclass
class _Deferred:
    """A key whose claim the handler makes with its writes (``defers_idempotency_claim``)."""

    using: str
    tenant_id: str
    key: str
    fingerprint: str
    transaction_open: bool
    statement: sql.KeyClaim | None = None


class _Replay(Exception):
    """Raised from ``initial()`` to answer with a stored response."""

    def __init__(self, response: HttpResponse) -> None:
        self.response = response


class IdempotencyMixin:
    """Make a DRF view's unsafe methods honour ``Idempotency-Key`` (docs/guide/idempotency.md).

    Put it first in the bases: ``class MyView(IdempotencyMixin, TenantScopedMixin,
    APIView)``. Every unsafe request the view handles runs in one database transaction
    that is rolled back unless the answer is 2xx; the handler may use ``select_for_update``
    and rely on it (unless it says its writes are one statement:
    :meth:`writes_in_one_statement`). Keys are scoped by tenant (``request.tenant_id``, set by
    :class:`~django_orders.tenancy.TenantScopedMixin`). ``idempotency_key_required`` is
    ``None`` to follow the ``IDEMPOTENCY_KEY_REQUIRED`` setting, or a boolean.
    """

    idempotency_key_required: bool | None = None

    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> HttpResponseBase:
        # The transaction opened in initial() must outlive finalize_response(), where the
        # response is stored: the stack closes it once DRF's dispatch is done.
        try:
            with contextlib.ExitStack() as stack:
                self._idempotency_stack = stack
                self._idempotency_claim: _Claim | None = None
                self._idempotency_deferred: _Deferred | None = None
                self._idempotency_using: str | None = None
                self._idempotency_stored: tuple[Any, tuple[Any, ...]] | None = None
                return super().dispatch(request, *args, **kwargs)  # type: ignore[misc]
        except DatabaseError as exc:
            # Errors inside the view reached the exception handler already; this is the
            # COMMIT itself losing to a concurrent transaction (SERIALIZABLE, a deferred
            # constraint). Nothing was kept, key included: answered as the handler would.
            if not is_concurrency_failure(exc):
                raise
            logging.getLogger("django_orders").warning(
                "Answered 409 concurrent_conflict at commit: %s", exc
            )
            return concurrent_conflict().as_response()

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # type: ignore[misc]
        if not self._handles_idempotently(request):
            return
        key = self._idempotency_key(request)
        data = request.data  # parse now: 400 / 413 / 415 before the key is looked at
        using = router.db_for_write(IdempotencyKey)
        tenant_id = getattr(request, "tenant_id", None) or ""
        deferred = (
            key is not None
            and not _RECENT_KEYS.seen((tenant_id, key))
            and self.defers_idempotency_claim(request, using)
        )
        # One statement needs no transaction of its own (docs/benchmarks.md, Findings 14
        # and 16): a deferred claim's, or the handler's own when there is no key to claim.
        # Asked before looking for an open transaction, on purpose: a view may prepare its
        # one statement there and run it inside that transaction (the transitions under
        # ATOMIC_REQUESTS or row-level security, tests/test_row_level_security.py).
        one_statement = (
            (deferred or key is None)
            and self.writes_in_one_statement(request, using)
            and not connections[using].in_atomic_block
        )
        if not one_statement:
            self._open_transaction(using, key)
        self._idempotency_using = using
        if key is None:
            return
        fingerprint = request_fingerprint(request.method or "", request.path, data)
        if deferred:
            self._idempotency_deferred = _Deferred(
                using, tenant_id, key, fingerprint, transaction_open=not one_statement
            )
            return
        # Raises the replay (or a 422 / 409) when the key is not this request's to take.
        record_id = self._claim_key(using, tenant_id, key, fingerprint)
        self._idempotency_claim = _Claim(record_id, using)

    def _open_transaction(self, using: str, key: str | None) -> None:
        """Open the request's transaction on ``using``, to close when dispatch() ends."""
        try:
            if getattr(self, "tenant_transaction_using", None) != using:
                self._idempotency_stack.enter_context(transaction.atomic(using=using))
            # else: the tenant's transaction of row-level security (tenancy.py) is open on
            # this database for the whole request: it is the request's one transaction.
        except OperationalError as exc:
            # SQLite takes its write lock at BEGIN IMMEDIATE: a busy timeout there is the
            # same "still being processed" as PostgreSQL's lock_timeout on the claim.
            if key is not None and _is_lock_timeout(exc):
                raise _in_use() from exc
            raise

    def handle_exception(self, exc: Exception) -> Any:
        if isinstance(exc, _Replay):
            return exc.response
        if (
            self._idempotency_deferred is not None
            and isinstance(exc, OperationalError)
            and _is_lock_timeout(exc)
        ):
            # The deferred claim's statement waited for a concurrent holder of the key.
            exc = _in_use()
        return super().handle_exception(exc)  # type: ignore[misc]

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(  # type: ignore[misc]
            request, response, *args, **kwargs
        )
        using = self._idempotency_using
        if using is None:
            return response
        if not 200 <= response.status_code < 300:
            # Nothing of a refused request remains: no key, no side effect. (Without a
            # transaction, the one statement of a deferred claim did not write.)
            if connections[using].in_atomic_block:
                transaction.set_rollback(True, using=using)
        elif self._idempotency_claim is not None and not self._stored_already(response):
            self._store_response(self._idempotency_claim, response)
        return response

    def store_response_statements(self, response: Any, using: str) -> sql.Statements:
        """The statement that stores ``response`` as the answer of this request's key.

        For a handler that knows its response before its last write (the create): it
        sends the statement with that write, in its round trip, and the key is not
        written again at the end — unless the response that leaves ``finalize_response()``
        differs (another object, status, body or stored header), which is stored then as
        before. ``response`` is rendered here. Nothing (``()``) without a key, for another
        database than the key's, or for a response that is not 2xx.
        """
        claim = self._idempotency_claim
        if claim is None or claim.using != using or not 200 <= response.status_code < 300:
            return ()
        self._prepare_for_rendering(response)
        snapshot = _snapshot(response)
        self._idempotency_stored = (response, snapshot)
        params = self._store_params(claim, response, snapshot)
        return [(sql.idempotency_statements(connections[using]).store, params)]

    def defers_idempotency_claim(self, request: Request, using: str) -> bool:
        """Whether the handler claims this request's key itself, in the statement of its
        writes (:meth:`claim_statement`, then :meth:`deferred_claim_taken`), instead of
        ``initial()`` claiming it first. ``False`` here.

        Say yes only when nothing the handler does before that statement can answer
        otherwise than a replay would, nor act outside the database transaction: a key
        that turns out to exist is replayed or refused after that work
        (docs/benchmarks.md, Finding 14).
        """
        return False

    def writes_in_one_statement(self, request: Request, using: str) -> bool:
        """Whether the handler's writes for this request are one statement, and nothing
        after it can answer otherwise than 2xx: then no transaction is opened for them
        (one statement is atomic by itself). Asked when the claim is deferred — the
        writes are then the claim's statement, and the transaction opens if the key
        turns out to be there — and when the request has no key: a handler saying yes
        then opens any transaction it needs itself (the transitions' conditional
        statement, whose no-match takes the locked path). ``False`` here; never inside an
        open transaction (``ATOMIC_REQUESTS``, row-level security's), whose savepoint is
        kept."""
        return False

    def claim_statement(self, response: Any) -> sql.KeyClaim:
        """The deferred claim of this request's key, storing ``response`` (2xx, rendered
        here) as its answer: the ``INSERT … ON CONFLICT DO NOTHING RETURNING id`` the
        handler's writes are made conditional on (:func:`sql.insert_objects_if_claimed`)."""
        deferred = self._idempotency_deferred
        assert deferred is not None
        assert 200 <= response.status_code < 300
        self._prepare_for_rendering(response)
        snapshot = _snapshot(response)
        status, content, headers = snapshot
        connection = connections[deferred.using]
        values = self._claim_values(connection, deferred.fingerprint, timezone.now())
        values.update(
            state=IdempotencyKey.State.COMPLETED,
            response_status=status,
            response_body=content.decode(response.charset or "utf-8"),
            response_headers=_HEADERS_FIELD.get_db_prep_save(dict(headers), connection),
        )
        self._idempotency_stored = (response, snapshot)
        deferred.statement = sql.KeyClaim(
            sql.idempotency_statements(connection).insert,
            [deferred.tenant_id, deferred.key, *(values[name] for name in sql.KEY_CLAIM_COLUMNS)],
        )
        return deferred.statement

    def deferred_claim_taken(self) -> bool:
        """After the handler's claiming statement: ``True`` if it took the key (its writes
        were made, the response stored). ``False`` if the key was there already and
        nothing was written: then the key is claimed as ``initial()`` claims it — its
        replay, 422 or 409 is raised here, or an expired key taken over — and the handler
        writes as it would have without deferring."""
        deferred = self._idempotency_deferred
        assert deferred is not None
        assert deferred.statement is not None
        self._idempotency_deferred = None
        inserted = deferred.statement.inserted
        # A retry of this key, if it reaches this process, is claimed first: a replay
        # then costs no order built for nothing (docs/benchmarks.md, Finding 14).
        _RECENT_KEYS.add((deferred.tenant_id, deferred.key))
        if inserted is None:
            self._idempotency_stored = None
            if not deferred.transaction_open:  # the lookup, a takeover, the writes: atomic
                self._open_transaction(deferred.using, deferred.key)
            inserted = self._claim_key(
                deferred.using,
                deferred.tenant_id,
                deferred.key,
                deferred.fingerprint,
                conflicted=True,
            )
        self._idempotency_claim = _Claim(int(inserted), deferred.using)
        return deferred.statement.inserted is not None

    def _stored_already(self, response: Any) -> bool:
        stored = self._idempotency_stored
        if stored is None or stored[0] is not response:
            return False
        # A body, status or stored header changed after the statement was sent: store again.
        return _snapshot(response) == stored[1]

    # Internals ---------------------------------------------------------------------------

    def _prepare_for_rendering(self, response: Any) -> None:
        """What DRF's ``finalize_response()`` sets on a ``Response`` before rendering it."""
        if isinstance(response, Response):
            request = self.request  # type: ignore[attr-defined]
            response.accepted_renderer = request.accepted_renderer
            response.accepted_media_type = request.accepted_media_type
            response.renderer_context = self.get_renderer_context()  # type: ignore[attr-defined]

    def _handles_idempotently(self, request: Request) -> bool:
        method = (request.method or "").upper()
        if method not in UNSAFE_METHODS:
            return False
        # A method the view lacks gets its 405, not a key check.
        name = method.lower()
        return name in self.http_method_names and hasattr(self, name)  # type: ignore[attr-defined]

    def _idempotency_key(self, request: Request) -> str | None:
        value = request.headers.get(HEADER)
        if value is None:
            required = self.idempotency_key_required
            if required is None:
                required = orders_settings.IDEMPOTENCY_KEY_REQUIRED
            if required:
                raise Problem(400, "missing_idempotency_key", f"The {HEADER} header is required.")
            return None
        # Only OWS (SP, HTAB; RFC 9110 §5.5) around a field value is not part of it:
        # str.strip() would also drop control characters and U+0085/U+00A0 (what WSGI
        # makes of such bytes), turning an invalid key into a valid, different one.
        return parse_key(value.strip(" \t"))

    def _claim_key(
        self,
        using: str,
        tenant_id: str,
        key: str,
        fingerprint: str,
        *,
        conflicted: bool = False,
    ) -> int:
        """The id of the key row this request now holds; a live key raises its replay.
        ``conflicted``: the key's insert found it there already (a deferred claim).

        ``INSERT … ON CONFLICT DO NOTHING`` (docs/benchmarks.md, Finding 2): a replay takes
        no row lock and no transaction id. The insert still waits for a concurrent,
        uncommitted holder of the same key, so the race-safety is the unique index's, as
        before. A live key is then read and replayed (or refused); only an expired one is
        taken over, by an ``UPDATE`` that re-checks the expiry under the row lock.
        """
        connection = connections[using]
        statements = sql.idempotency_statements(connection)
        adapt = connection.ops.adapt_datetimefield_value
        now = timezone.now()
        claim = self._claim_values(connection, fingerprint, now)
        values = [claim[name] for name in sql.KEY_CLAIM_COLUMNS]
        try:
            with connection.cursor() as cursor:
                # Each pass ends in a claim or a replay unless a concurrent request changed
                # the row in between (took the expired key over, or purged it).
                for attempt in range(3):
                    if attempt or not conflicted:
                        cursor.execute(statements.insert, [tenant_id, key, *values])
                        inserted = cursor.fetchone()
                        if inserted is not None:
                            return int(inserted[0])
                    cursor.execute(statements.lookup, [adapt(now), tenant_id, key])
                    found = sql.row(cursor, sql.KEY_LOOKUP_COLUMNS)
                    if found is None:
                        continue  # purged meanwhile: claim it anew
                    if not found["expired"]:
                        self._replay_or_refuse(found, fingerprint)
                    cursor.execute(statements.takeover, [*values, found["id"], adapt(now)])
                    taken = cursor.fetchone()
                    if taken is not None:
                        return int(taken[0])
        except OperationalError as exc:
            if _is_lock_timeout(exc):
                raise _in_use() from exc
            raise
        raise _in_use()  # pragma: no cover - three concurrent changes in a row

    def _claim_values(self, connection: Any, fingerprint: str, now: Any) -> dict[str, Any]:
        """The values of a new claim of this request's key, by column name, adapted."""
        adapt = connection.ops.adapt_datetimefield_value
        request = self.request  # type: ignore[attr-defined]
        return {
            "method": request.method,
            # For people reading the admin, percent-encoded: a host's URL parameters can
            # carry any text (NUL included), which a text column cannot hold.
            "path": escape_uri_path(request.path),
            "fingerprint": fingerprint,
            "state": IdempotencyKey.State.PROCESSING,
            "response_status": None,
            "response_body": "",
            "response_headers": "{}",
            "created_at": adapt(now),
            "expires_at": adapt(now + orders_settings.IDEMPOTENCY_TTL),
        }

    def _replay_or_refuse(self, found: dict[str, Any], fingerprint: str) -> None:
        """Raise the stored response of a live key, or 422 for another request's key."""
        if found["state"] != IdempotencyKey.State.COMPLETED:
            raise _in_use()  # pragma: no cover - only a committed, completed row is visible
        if found["fingerprint"] != fingerprint:
            raise Problem(
                422,
                "idempotency_key_reused",
                "This Idempotency-Key was used for a different request.",
            )
        # Django has the drivers give jsonb back as text (a plain JSONField, no decoder).
        stored_headers = found["response_headers"]
        headers = dict(
            json.loads(stored_headers) if isinstance(stored_headers, str) else stored_headers
        )
        response = HttpResponse(
            found["response_body"],
            status=found["response_status"] or 200,
            content_type=headers.pop("Content-Type", "application/json"),
            headers={**headers, REPLAYED_HEADER: "true"},
        )
        raise _Replay(response)

    def _store_response(self, claim: _Claim, response: Any) -> None:
        connection = connections[claim.using]
        with connection.cursor() as cursor:
            cursor.execute(
                sql.idempotency_statements(connection).store, self._store_params(claim, response)
            )

    def _store_params(
        self, claim: _Claim, response: Any, snapshot: tuple[Any, ...] | None = None
    ) -> list[Any]:
        """The parameters of the store statement for ``response`` (rendered here)."""
        status, content, headers = snapshot or _snapshot(response)
        return [
            IdempotencyKey.State.COMPLETED,
            status,
            content.decode(response.charset or "utf-8"),
            _HEADERS_FIELD.get_db_prep_save(dict(headers), connections[claim.using]),
            claim.record_id,
        ]


_HEADERS_FIELD = IdempotencyKey._meta.get_field("response_headers")


class _RecentKeys:
    """The last ``size`` (tenant, key) pairs this process claimed with a deferred claim.

    Only a choice of path: a key found here is claimed before the handler runs (as
    without deferring), one not found is claimed with the writes. Both give the same
    answers; the first costs less for a replay, the second for a new key.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.keys: dict[tuple[str, str], None] = {}
        self.lock = threading.Lock()

    def seen(self, key: tuple[str, str]) -> bool:
        return key in self.keys

    def add(self, key: tuple[str, str]) -> None:
        with self.lock:
            self.keys[key] = None
            if len(self.keys) > self.size:
                del self.keys[next(iter(self.keys))]  # the oldest


_RECENT_KEYS = _RecentKeys(4096)


def _snapshot(response: Any) -> tuple[int, bytes, tuple[tuple[str, str], ...]]:
    """What is stored of ``response`` (rendered here): status, body, stored headers."""
    if hasattr(response, "render"):
        response.render()
    headers = tuple((name, response[name]) for name in STORED_HEADERS if response.has_header(name))
    return response.status_code, response.content, headers


def _in_use() -> Problem:
    return Problem(
        409,
        "idempotency_key_in_use",
        "A request with this Idempotency-Key is still being processed; retry later.",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def _is_lock_timeout(exc: OperationalError) -> bool:
    """PostgreSQL's lock_timeout or SQLite's busy timeout ended the wait."""
    return sqlstate(exc) == LOCK_NOT_AVAILABLE or is_sqlite_busy(exc)
