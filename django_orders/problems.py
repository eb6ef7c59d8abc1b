"""RFC 9457 problem details: the one shape every error of the package takes.

``{"type": "about:blank", "title": ..., "status": ..., "detail": ..., "code": ...}`` with
``Content-Type: application/problem+json``. ``code`` is the stable, machine-readable member
clients branch on; ``title`` is the HTTP reason phrase, as RFC 9457 §4.2.1 advises for
``about:blank``.

:func:`exception_handler` is used by the package's own views only (they override
``get_exception_handler``), so the host's global ``EXCEPTION_HANDLER`` is left untouched.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from django.core.exceptions import PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.db import DatabaseError, OperationalError
from django.http import Http404, HttpResponse
from rest_framework import exceptions
from rest_framework.response import Response

logger = logging.getLogger("django_orders")

PROBLEM_CONTENT_TYPE = "application/problem+json"

#: SQLSTATE lock_not_available: the host's ``lock_timeout`` ended a wait for a lock.
LOCK_NOT_AVAILABLE = "55P03"
#: SQLSTATEs of a transaction that lost to a concurrent one and may simply be retried:
#: serialization_failure (REPEATABLE READ / SERIALIZABLE), deadlock_detected, and
#: lock_not_available.
CONCURRENCY_SQLSTATES = frozenset({"40001", "40P01", LOCK_NOT_AVAILABLE})


class Problem(exceptions.APIException):
    """An error answered as problem+json with a stable ``code``.

    Extra keyword arguments become extension members of the body (``currentVersion``, …);
    ``headers`` are set on the response (``ETag``, ``Retry-After``, …).
    """

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        headers: Mapping[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail=detail, code=code)
        self.status_code = status
        self.problem_code = code
        self.problem_detail = detail
        self.headers = dict(headers or {})
        self.extensions = extensions

    def body(self) -> dict[str, Any]:
        return problem_body(
            self.status_code, self.problem_code, self.problem_detail, **self.extensions
        )

    def as_response(self) -> HttpResponse:
        """The problem as a plain Django response (middleware and function views)."""
        return problem_response(
            self.status_code,
            self.problem_code,
            self.problem_detail,
            headers=self.headers,
            **self.extensions,
        )


def problem_body(status: int, code: str, detail: str, **extensions: Any) -> dict[str, Any]:
    """The problem+json document for ``status`` and ``code``."""
    try:
        title = HTTPStatus(status).phrase
    except ValueError:  # pragma: no cover - every status we use is a known one
        title = "Error"
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    body.update(extensions)
    return body


def problem_response(
    status: int,
    code: str,
    detail: str,
    *,
    headers: Mapping[str, str] | None = None,
    **extensions: Any,
) -> HttpResponse:
    """A plain Django response carrying a problem (for middleware and non-DRF views)."""
    return HttpResponse(
        json.dumps(problem_body(status, code, detail, **extensions)),
        status=status,
        content_type=PROBLEM_CONTENT_TYPE,
        headers=headers,
    )


def as_problem(exc: exceptions.APIException) -> Problem:
    """``exc`` as a problem: itself if it is one, else DRF's exception with our codes."""
    return exc if isinstance(exc, Problem) else _from_drf(exc)


def _from_drf(exc: exceptions.APIException) -> Problem:
    """Translate DRF's own exceptions into problems with our codes."""
    headers: dict[str, str] = {}
    if isinstance(exc, exceptions.ValidationError):
        errors = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        return Problem(400, "validation_error", "The request body is not valid.", errors=errors)
    if isinstance(exc, exceptions.ParseError):
        return Problem(400, "invalid_json", str(exc.detail))
    if isinstance(exc, exceptions.UnsupportedMediaType):
        return Problem(415, "unsupported_media_type", str(exc.detail))
    if isinstance(exc, exceptions.MethodNotAllowed):
        return Problem(405, "method_not_allowed", str(exc.detail))
    if isinstance(exc, exceptions.NotAcceptable):
        return Problem(406, "not_acceptable", str(exc.detail))
    if isinstance(exc, exceptions.NotFound):
        return Problem(404, "not_found", "Not found.")
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        auth_header = getattr(exc, "auth_header", None)
        if auth_header:
            headers["WWW-Authenticate"] = auth_header
        return Problem(exc.status_code, "not_authenticated", str(exc.detail), headers=headers)
    if isinstance(exc, exceptions.Throttled):
        wait = getattr(exc, "wait", None)
        if wait is not None:
            headers["Retry-After"] = str(math.ceil(wait))
        return Problem(429, "throttled", str(exc.detail), headers=headers)
    if isinstance(exc, exceptions.PermissionDenied):
        code = exc.get_codes() if isinstance(exc.get_codes(), str) else "permission_denied"
        return Problem(403, str(code), str(exc.detail))
    code = exc.get_codes()
    return Problem(exc.status_code, code if isinstance(code, str) else "error", str(exc.detail))


def sqlstate(exc: BaseException) -> str | None:
    """The PostgreSQL SQLSTATE behind a Django database error (psycopg 2 or 3), if any."""
    cause = exc.__cause__
    return getattr(cause, "pgcode", None) or getattr(cause, "sqlstate", None)


def is_sqlite_busy(exc: BaseException) -> bool:
    """SQLite's busy timeout ran out while another connection held the write lock."""
    return isinstance(exc, OperationalError) and "database is locked" in str(exc)


def is_concurrency_failure(exc: BaseException) -> bool:
    """Whether a database error means "lost to a concurrent transaction, retry": a
    PostgreSQL SQLSTATE of :data:`CONCURRENCY_SQLSTATES`, or SQLite's busy timeout."""
    if not isinstance(exc, DatabaseError):
        return False
    return sqlstate(exc) in CONCURRENCY_SQLSTATES or is_sqlite_busy(exc)


def concurrent_conflict() -> Problem:
    """409 ``concurrent_conflict``: nothing was applied, the same request may be retried."""
    return Problem(
        409,
        "concurrent_conflict",
        "The request collided with a concurrent change and was not applied; retry it.",
        headers={"Retry-After": "1"},
    )


def exception_handler(exc: Exception, context: Mapping[str, Any]) -> Response | None:
    """DRF exception handler for the package's views: every error is problem+json."""
    if is_concurrency_failure(exc):
        # The transaction was rolled back as a whole (the view's atomic blocks have
        # exited), so nothing of the request was kept: a retry is safe — with the same
        # Idempotency-Key too, which was not stored either.
        logger.warning("Answered 409 concurrent_conflict: %s", exc)
        exc = concurrent_conflict()
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        # Django's own, as DRF's default handler maps it: a hook (a tenant resolver, an
        # access check) may raise it, and it is a 403, not a server error.
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, SuspiciousOperation):
        # Django answers these with an HTML 400 (TooManyFieldsSent from a query string with
        # more than DATA_UPLOAD_MAX_NUMBER_FIELDS parameters, …); log them as Django's
        # handler would, and answer problem+json like every other error of the package.
        logging.getLogger(f"django.security.{exc.__class__.__name__}").error(str(exc))
        if isinstance(exc, RequestDataTooBig):
            exc = Problem(413, "payload_too_large", "The request body is too large.")
        else:
            exc = Problem(400, "bad_request", "The request is malformed.")
    if not isinstance(exc, exceptions.APIException):
        return None  # a real server error: let Django report it
    problem = as_problem(exc)
    return Response(
        problem.body(),
        status=problem.status_code,
        headers=problem.headers,
        content_type=PROBLEM_CONTENT_TYPE,
    )
