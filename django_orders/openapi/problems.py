"""Every problem an endpoint can answer, and the responses that describe them.

One :class:`Case` per ``code`` the package answers (docs/api/); an operation lists the
cases that apply to it under the settings in force, and :func:`responses` groups them by
status into ``application/problem+json`` responses with one example per code and the
headers those problems carry.

Where the code that answers a problem makes it in a function of its own (the package's,
or DRF's exception turned into ours by :func:`~django_orders.problems.as_problem`), the
example is that function's problem (:meth:`Case.of`): the schema shows what the API
answers, in one place. The others are written here, as examples.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from rest_framework import exceptions

from django_orders import conditional, parsers, permissions
from django_orders.problems import (
    PROBLEM_CONTENT_TYPE,
    Problem,
    as_problem,
    concurrent_conflict,
    problem_body,
)


@dataclass(frozen=True)
class Case:
    """One problem: its status, ``code``, an example ``detail``, extension members and the
    response headers it carries."""

    status: int
    code: str
    detail: str
    extensions: dict[str, Any] = field(default_factory=dict)
    headers: tuple[str, ...] = ()

    @classmethod
    def of(cls, problem: Problem | exceptions.APIException) -> Case:
        """The case of a problem the API answers (a DRF exception as it is answered)."""
        problem = as_problem(problem)
        return cls(
            problem.status_code,
            problem.problem_code,
            problem.problem_detail,
            problem.extensions,
            tuple(problem.headers),
        )

    def example(self) -> dict[str, Any]:
        return problem_body(self.status, self.code, self.detail, **self.extensions)


# Response headers, as OpenAPI header objects.
HEADERS: dict[str, dict[str, Any]] = {
    "ETag": {
        "description": 'The strong entity-tag of the order\'s version: `"<version>"`.',
        "schema": {"type": "string", "pattern": '^"[0-9]+"$'},
        "example": '"1"',
    },
    "Location": {
        "description": "The absolute URL of the new order.",
        "schema": {"type": "string", "format": "uri"},
    },
    "Link": {
        "description": 'RFC 8288 `<url>; rel="next"`: the next page, when there is one.',
        "schema": {"type": "string"},
    },
    "Idempotent-Replayed": {
        "description": "`true` when this is the stored response of an earlier request with "
        "the same Idempotency-Key.",
        "schema": {"type": "string", "enum": ["true"]},
    },
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
        "required": True,
    },
    "WWW-Authenticate": {
        "description": "The challenge of the host's first authentication class.",
        "schema": {"type": "string"},
    },
    "Allow": {
        "description": "The methods the path serves.",
        "schema": {"type": "string"},
        "required": True,
    },
}

TENANT_FORBIDDEN = Case.of(permissions.tenant_forbidden())
NOT_AUTHENTICATED_401 = Case(
    401,
    "not_authenticated",
    "Authentication credentials were not provided.",
    headers=("WWW-Authenticate",),
)
NOT_AUTHENTICATED_403 = Case(
    403, "not_authenticated", "Authentication credentials were not provided."
)
PERMISSION_DENIED = Case.of(exceptions.PermissionDenied())
THROTTLED = Case.of(exceptions.Throttled(wait=7))
METHOD_NOT_ALLOWED = Case(
    405, "method_not_allowed", 'Method "DELETE" not allowed.', headers=("Allow",)
)
NOT_FOUND = Case(404, "not_found", "No such order.")
MISSING_KEY = Case(400, "missing_idempotency_key", "The Idempotency-Key header is required.")
INVALID_KEY = Case(
    400, "invalid_idempotency_key", "The Idempotency-Key is longer than 255 characters."
)
KEY_REUSED = Case(
    422,
    "idempotency_key_reused",
    "This Idempotency-Key was used for a different request.",
)
KEY_IN_USE = Case(
    409,
    "idempotency_key_in_use",
    "A request with this Idempotency-Key is still being processed; retry later.",
    headers=("Retry-After",),
)
CONCURRENT_CONFLICT = Case.of(concurrent_conflict())
INVALID_JSON = Case(400, "invalid_json", "JSON parse error - Expecting value: line 1 column 1")
LENGTH_REQUIRED = Case(411, "length_required", "Send the body with a Content-Length header.")
UNSUPPORTED_MEDIA_TYPE = Case(
    415,
    "unsupported_media_type",
    'Unsupported media type "text/plain" in request: send application/json.',
)
VALIDATION_ERROR = Case(
    400,
    "validation_error",
    "The request body is not valid.",
    {"errors": {"status": ["This field is read-only."]}},
)
INVALID_FILTER = Case(
    400,
    "invalid_filter",
    "status must be one of: draft, confirmed, closed.",
    {"errors": {"status": ["status must be one of: draft, confirmed, closed."]}},
)
INVALID_CURSOR = Case(400, "invalid_cursor", "The cursor was issued for another tenant or filter.")
PRECONDITION_REQUIRED = Case.of(conditional.precondition_required())
INVALID_IF_MATCH = Case.of(conditional.invalid_if_match())
VERSION_MISMATCH = Case.of(conditional.version_mismatch(2))
INVALID_TRANSITION = Case(
    409,
    "invalid_transition",
    "An order that is confirmed cannot become confirmed.",
    {"currentStatus": "confirmed"},
)
# A host rule's refusal carries the rule's own code (ORDER_RULES, docs/guide/extending.md).
HOST_RULE_422 = Case(422, "host_rule_code", "A rule of the host refused the change.")
HOST_RULE_409 = Case(409, "host_rule_code", "A rule of the host refused the change.")


def payload_too_large(limit: int) -> Case:
    return Case.of(parsers.OrdersJSONParser().too_large(limit))


def responses(cases: Iterable[Case], problem_ref: dict[str, Any]) -> dict[str, Any]:
    """The ``application/problem+json`` responses of ``cases``, by status."""
    by_status: dict[int, list[Case]] = {}
    for case in cases:
        listed = by_status.setdefault(case.status, [])
        if all(known.code != case.code for known in listed):
            listed.append(case)
    result: dict[str, Any] = {}
    for status in sorted(by_status):
        listed = by_status[status]
        headers: dict[str, Any] = {}
        for case in listed:
            for name in case.headers:
                header = dict(HEADERS[name])
                # A header only some codes of the status carry is not required.
                if not all(name in other.headers for other in listed):
                    header.pop("required", None)
                headers[name] = header
        codes = ", ".join(f"`{case.code}`" for case in listed)
        response: dict[str, Any] = {
            "description": f"{HTTPStatus(status).phrase}: {codes}.",
            "content": {
                PROBLEM_CONTENT_TYPE: {
                    "schema": problem_ref,
                    "examples": {
                        case.code: {"summary": case.code, "value": case.example()}
                        for case in listed
                    },
                }
            },
        }
        if headers:
            response["headers"] = headers
        result[str(status)] = response
    return result
