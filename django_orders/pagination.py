"""Keyset ("seek") pagination with signed cursors, for the orders list and a host's views.

:class:`KeysetPagination` walks any queryset ordered by a pair of immutable, non-null
columns, a timestamp and a unique id, newest first by default::

    WHERE <the view's filters> AND (created_at, id) < (%s, %s)
    ORDER BY created_at DESC, id DESC
    LIMIT <limit + 1>

Unlike ``OFFSET``, the cost of a page does not grow with its depth (an index on
``(..., created_at, id)`` is read backwards from the cursor's position), and a walk over
all pages sees every row that existed when it started exactly once, however many rows are
inserted or changed meanwhile — the position is a value, not a count of rows.

Cursors are opaque to clients: a JSON payload (the scope and the last row's key) signed
with :mod:`django.core.signing`. The scope is the tenant and the values of the filter
parameters, so a cursor is refused — 400 ``invalid_cursor``, never the first page — when it
is malformed, tampered with, or replayed by another tenant or with another filter.
See docs/guide/keyset-pagination.md.

One module past 400 lines, and :class:`KeysetPagination` with more methods than a class
here usually has, on purpose: it is DRF's pagination interface (``paginate_queryset``,
``get_paginated_response``, the schema hooks) plus the cursor's signing and scope, and a
host subclass overrides them one by one.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
import zlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from django.conf import settings
from django.core import signing
from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured
from django.db import connections, models
from django.db.models import Q
from django.db.models.expressions import Expression, Value
from django.db.models.sql.compiler import SQLCompiler
from django.utils.encoding import force_str
from django.utils.translation import gettext_lazy as _
from rest_framework.pagination import BasePagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param

from django_orders.conf import orders_settings
from django_orders.problems import Problem
from django_orders.tenancy import get_current_tenant

__all__ = ["KeysetPagination", "RowValueComparison"]

_EPOCH_AWARE = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_EPOCH_NAIVE = dt.datetime(1970, 1, 1)
_ONE_MICROSECOND = dt.timedelta(microseconds=1)
# At most nine digits: the range check below then never meets Python's cap on the length
# of an int() conversion (a 5,000-digit limit would be a ValueError, not a 400).
_LIMIT_RE = re.compile(r"[0-9]{1,9}")

_INTEGER_FIELDS = (models.IntegerField,)  # AutoField, BigAutoField, … are subclasses
_TEXT_FIELDS = (models.CharField, models.TextField)
_KEY_FIELDS = (models.DateTimeField, models.UUIDField, *_INTEGER_FIELDS, *_TEXT_FIELDS)


class RowValueComparison(Expression):
    """The SQL row-value comparison ``(col_1, col_2, …) < (%s, %s, …)`` (or ``>``).

    PostgreSQL serves it from a B-tree index on those columns as one ``Index Cond``
    (``ROW(created_at, id) < ROW(…)``), where the equivalent
    ``a < x OR (a = x AND b < y)`` is re-checked row by row. Values are adapted by the
    column's field (a UUID is stored as 32 hex characters on SQLite), so the comparison
    agrees with ``ORDER BY`` on every backend.
    """

    conditional = True

    def __init__(self, columns: Sequence[Any], operator: str, values: Sequence[Any]) -> None:
        if operator not in ("<", ">"):
            raise ValueError(f"operator must be '<' or '>', not {operator!r}")
        if len(columns) != len(values) or not columns:
            raise ValueError("a row-value comparison needs as many values as columns")
        super().__init__(output_field=models.BooleanField())
        self.columns: list[Any] = [models.F(c) if isinstance(c, str) else c for c in columns]
        self.operator = operator
        self.values = list(values)

    def get_source_expressions(self) -> list[Any]:
        return list(self.columns)

    def set_source_expressions(self, exprs: Iterable[Any]) -> None:
        self.columns = list(exprs)

    def as_sql(
        self, compiler: SQLCompiler, connection: Any, **extra_context: Any
    ) -> tuple[str, tuple[Any, ...]]:
        lhs: list[str] = []
        rhs: list[str] = []
        lhs_params: list[Any] = []
        rhs_params: list[Any] = []
        for column, value in zip(self.columns, self.values, strict=True):
            sql, params = compiler.compile(column)
            lhs.append(sql)
            lhs_params.extend(params)
            sql, params = compiler.compile(Value(value, output_field=column.output_field))
            rhs.append(sql)
            rhs_params.extend(params)
        sql = f"({', '.join(lhs)}) {self.operator} ({', '.join(rhs)})"
        return sql, (*lhs_params, *rhs_params)


def expanded_comparison(fields: Sequence[str], operator: str, values: Sequence[Any]) -> Q:
    """``a < x OR (a = x AND (b < y OR …))``: the row comparison for other databases."""
    lookup = "lt" if operator == "<" else "gt"
    head, *rest = fields
    first, *others = values
    condition = Q(**{f"{head}__{lookup}": first})
    if rest:
        condition |= Q(**{head: first}) & expanded_comparison(rest, operator, others)
    return condition


class KeysetPagination(BasePagination):
    """Keyset pagination over a ``(timestamp, id)`` ordering, with signed cursors.

    A DRF pagination class: set it as ``pagination_class`` of a ``GenericAPIView``, or call
    it from any ``APIView``::

        paginator = KeysetPagination(filter_query_params=("status",))
        page = paginator.paginate_queryset(queryset, request, view=self)
        return paginator.get_paginated_response([obj.to_dict() for obj in page])

    The response is ``{"items": [...], "nextCursor": "<opaque>" | null}``, with a
    ``Link: <…>; rel="next"`` header (RFC 8288) while there is a next page. That link is
    the request's absolute URL with the cursor replaced, so ``limit`` and the filters are
    kept; a cursor is not bound to ``limit``, the next page may ask for another size.

    Requirements on the queryset: the ``ordering`` columns are ``NOT NULL`` and never
    change once a row exists, the last one is unique, and an index serves
    ``<filters>, <ordering columns>`` (e.g. ``(tenant_id, created_at, id)``).

    Errors are :class:`~django_orders.problems.Problem` (400): ``invalid_limit`` for a
    ``limit`` that is not an integer in ``1..max_page_size``, ``invalid_cursor`` for a
    cursor that does not verify or belongs to another scope.

    The cursor's scope is the tenant (``request.tenant_id``, set for tenant-scoped views)
    and the values of ``filter_query_params``. Override :meth:`get_cursor_scope` to bind
    cursors to something else (the user, say).
    """

    #: Model fields to order by, all descending (newest first) or all ascending.
    ordering: Sequence[str] = ("-created_at", "-id")
    #: Page size when ``limit`` is absent; ``None`` reads ``DJANGO_ORDERS["PAGE_SIZE"]``.
    page_size: int | None = None
    #: Largest accepted ``limit``; ``None`` reads ``DJANGO_ORDERS["MAX_PAGE_SIZE"]``.
    max_page_size: int | None = None
    page_size_query_param = "limit"
    page_size_query_description = _("Number of items to return, 1 to the maximum page size.")
    cursor_query_param = "cursor"
    cursor_query_description = _("The `nextCursor` of the previous page (opaque).")
    #: Query parameters that select the rows; a cursor is valid only with the same values.
    filter_query_params: Sequence[str] = ()
    #: Namespaces the cursor signature (the model and the ordering are appended).
    cursor_salt = "django_orders.pagination.KeysetPagination"
    #: Database vendors that get the row-value predicate; others get the expanded form.
    row_value_vendors: frozenset[str] = frozenset({"postgresql", "sqlite"})

    invalid_limit_message = _("limit must be an integer from 1 to {max_page_size}.")
    invalid_cursor_message = _("The cursor is not valid.")
    foreign_cursor_message = _("The cursor was issued for another tenant or filter.")

    def __init__(
        self,
        *,
        ordering: Sequence[str] | None = None,
        filter_query_params: Sequence[str] | None = None,
        page_size: int | None = None,
        max_page_size: int | None = None,
    ) -> None:
        if ordering is not None:
            self.ordering = tuple(ordering)
        if filter_query_params is not None:
            self.filter_query_params = tuple(filter_query_params)
        if page_size is not None:
            self.page_size = page_size
        if max_page_size is not None:
            self.max_page_size = max_page_size
        self.next_cursor: str | None = None
        self.base_url: str | None = None

    # -- the page -------------------------------------------------------------------------

    def paginate_queryset(  # type: ignore[override]  # a keyset needs a queryset, not a list
        self, queryset: models.QuerySet[Any], request: Request, view: Any = None
    ) -> list[Any]:
        """One page of ``queryset``: a single query fetching ``limit + 1`` rows."""
        return self._paginate(
            request,
            lambda: self.decode_cursor(request, queryset),
            lambda position, limit: list(self.get_page_queryset(queryset, position, limit)),
            lambda row: self.encode_cursor(request, queryset, row),
        )

    def paginate_rows(
        self,
        model: type[models.Model],
        fetch: Callable[[Sequence[Any] | None, int], list[Any]],
        request: Request,
        *,
        key: Callable[[Any], Sequence[Any]] | None = None,
    ) -> list[Any]:
        """One page of ``model``'s rows read by ``fetch(position, limit)`` instead of a
        queryset: up to ``limit + 1`` rows, in ``ordering``, after ``position`` (the
        values of the ordering fields, or ``None`` for the first page).

        For a view that reads its rows with a statement of its own (the package's list:
        docs/benchmarks.md, Findings 11 and 14). The rows are instances, or anything
        ``key(row)`` gives the values of the ordering fields of. Limits, cursors and the
        response are :meth:`paginate_queryset`'s.
        """
        return self._paginate(
            request,
            lambda: self._decode_cursor(request, model),
            fetch,
            lambda row: self._encode_cursor(request, model, row, key),
        )

    def _paginate(
        self,
        request: Request,
        decode: Callable[[], Sequence[Any] | None],
        fetch: Callable[[Sequence[Any] | None, int], list[Any]],
        encode: Callable[[Any], str],
    ) -> list[Any]:
        self.request = request
        self.base_url = request.build_absolute_uri()
        limit = self.get_limit(request)
        rows = fetch(decode(), limit)
        self.next_cursor = None
        if len(rows) > limit:
            rows = rows[:limit]
            self.next_cursor = encode(rows[-1])
        return rows

    def get_page_queryset(
        self, queryset: models.QuerySet[Any], position: Sequence[Any] | None, limit: int
    ) -> models.QuerySet[Any]:
        """``queryset`` after ``position`` in ``ordering``, ``limit + 1`` rows of it."""
        fields, descending = self._ordering_fields(queryset.model)
        if position is not None:
            operator = "<" if descending else ">"
            names = [field.attname for field in fields]
            if connections[queryset.db].vendor in self.row_value_vendors:
                queryset = queryset.filter(RowValueComparison(names, operator, position))
            else:
                queryset = queryset.filter(expanded_comparison(names, operator, position))
        return queryset.order_by(*self.ordering)[: limit + 1]

    def get_paginated_response(self, data: Any) -> Response:
        headers = {}
        next_link = self.get_next_link()
        if next_link is not None:
            headers["Link"] = f'<{next_link}>; rel="next"'
        return Response({"items": data, "nextCursor": self.next_cursor}, headers=headers)

    def get_next_link(self) -> str | None:
        """The absolute URL of the next page, or ``None`` on the last page."""
        if self.next_cursor is None or self.base_url is None:
            return None
        return replace_query_param(self.base_url, self.cursor_query_param, self.next_cursor)

    def get_limit(self, request: Request) -> int:
        """The page size: ``limit`` if given (1..max), else the default."""
        max_page_size = self.max_page_size or orders_settings.MAX_PAGE_SIZE
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return min(self.page_size or orders_settings.PAGE_SIZE, max_page_size)
        if _LIMIT_RE.fullmatch(raw) and 1 <= int(raw) <= max_page_size:
            return int(raw)
        raise Problem(
            400,
            "invalid_limit",
            force_str(self.invalid_limit_message).format(max_page_size=max_page_size),
        )

    # -- cursors --------------------------------------------------------------------------

    def get_cursor_scope(self, request: Request) -> list[Any]:
        """What a cursor is bound to: the tenant and the values of the filter parameters."""
        tenant = getattr(request, "tenant_id", None) or get_current_tenant()
        return [tenant, *(request.query_params.get(name) for name in self.filter_query_params)]

    def get_signer(self, model: type[models.Model]) -> signing.Signer:
        """The signer of this paginator's cursors for ``model``.

        ``.`` separates payload and signature so the whole cursor is URL-safe as it is;
        the salt keeps cursors of other models, orderings and uses of ``SECRET_KEY`` apart.
        """
        salt = f"{self.cursor_salt}:{model._meta.label_lower}:{','.join(self.ordering)}"
        return signing.Signer(sep=".", salt=salt)

    def encode_cursor(self, request: Request, queryset: models.QuerySet[Any], row: Any) -> str:
        """The signed cursor pointing just after ``row``."""
        return self._encode_cursor(request, queryset.model, row)

    def decode_cursor(self, request: Request, queryset: models.QuerySet[Any]) -> list[Any] | None:
        """The position the request's cursor points at (``None`` for the first page)."""
        return self._decode_cursor(request, queryset.model)

    def _encode_cursor(
        self,
        request: Request,
        model: type[models.Model],
        row: Any,
        key: Callable[[Any], Sequence[Any]] | None = None,
    ) -> str:
        fields, _descending = self._ordering_fields(model)
        values = [getattr(row, field.attname) for field in fields] if key is None else key(row)
        encoded = [_encode_key(field, value) for field, value in zip(fields, values, strict=True)]
        payload = [self.get_cursor_scope(request), encoded]
        return self.get_signer(model).sign_object(payload, compress=True)

    def _decode_cursor(self, request: Request, model: type[models.Model]) -> list[Any] | None:
        raw = request.query_params.get(self.cursor_query_param)
        if not raw:  # absent or "cursor=": the first page
            return None
        fields, _descending = self._ordering_fields(model)
        try:
            payload = self.get_signer(model).unsign_object(raw)
        except (signing.BadSignature, ValueError, TypeError, UnicodeError, zlib.error):
            raise self._invalid_cursor(self.invalid_cursor_message) from None
        if not (
            isinstance(payload, list)
            and len(payload) == 2
            and isinstance(payload[1], list)
            and len(payload[1]) == len(fields)
        ):
            raise self._invalid_cursor(self.invalid_cursor_message)
        scope, key = payload
        if scope != self.get_cursor_scope(request):
            raise self._invalid_cursor(self.foreign_cursor_message)
        try:
            return [_decode_key(field, value) for field, value in zip(fields, key, strict=True)]
        except (ValueError, TypeError, OverflowError):
            raise self._invalid_cursor(self.invalid_cursor_message) from None

    @staticmethod
    def _invalid_cursor(message: Any) -> Problem:
        return Problem(400, "invalid_cursor", force_str(message))

    def _ordering_fields(self, model: type[models.Model]) -> tuple[list[models.Field], bool]:
        directions = {name.startswith("-") for name in self.ordering}
        if not self.ordering or len(directions) != 1:
            raise ImproperlyConfigured(
                f"{type(self).__name__}.ordering must name fields all descending or all "
                f"ascending, not {self.ordering!r}."
            )
        fields: list[models.Field] = []
        for name in self.ordering:
            try:
                field = model._meta.get_field(name.lstrip("-"))
            except FieldDoesNotExist as exc:
                raise ImproperlyConfigured(f"{type(self).__name__}.ordering: {exc}") from exc
            if not isinstance(field, _KEY_FIELDS):
                raise ImproperlyConfigured(
                    f"{type(self).__name__}.ordering: cannot put {field!r} in a cursor."
                )
            fields.append(field)
        return fields, directions == {True}

    # -- schema ---------------------------------------------------------------------------

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "object",
            "required": ["items", "nextCursor"],
            "properties": {
                "items": schema,
                "nextCursor": {
                    "type": "string",
                    "nullable": True,
                    "description": "Pass as `cursor` to get the next page; null on the last.",
                },
            },
        }

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return [
            {
                "name": self.cursor_query_param,
                "required": False,
                "in": "query",
                "description": force_str(self.cursor_query_description),
                "schema": {"type": "string"},
            },
            {
                "name": self.page_size_query_param,
                "required": False,
                "in": "query",
                "description": force_str(self.page_size_query_description),
                "schema": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": self.max_page_size or orders_settings.MAX_PAGE_SIZE,
                    "default": min(
                        self.page_size or orders_settings.PAGE_SIZE,
                        self.max_page_size or orders_settings.MAX_PAGE_SIZE,
                    ),
                },
            },
        ]


def _encode_key(field: models.Field, value: Any) -> Any:
    """A key value as JSON: a timestamp as integer microseconds since the epoch (exact,
    unlike a float), a UUID as 32 hex digits."""
    if isinstance(field, models.DateTimeField):
        epoch = _EPOCH_NAIVE if value.tzinfo is None else _EPOCH_AWARE
        return (value - epoch) // _ONE_MICROSECOND
    if isinstance(field, models.UUIDField):
        return value.hex
    return value


def _decode_key(field: models.Field, value: Any) -> Any:
    if isinstance(field, models.DateTimeField):
        if type(value) is not int:
            raise TypeError("timestamp must be an integer")
        epoch = _EPOCH_AWARE if settings.USE_TZ else _EPOCH_NAIVE
        return epoch + value * _ONE_MICROSECOND
    if isinstance(field, models.UUIDField):
        if not isinstance(value, str):
            raise TypeError("id must be a string")
        return uuid.UUID(hex=value)
    if isinstance(field, _INTEGER_FIELDS):
        if type(value) is not int:
            raise TypeError("id must be an integer")
        return value
    if not isinstance(value, str):
        raise TypeError("key must be a string")
    return value
