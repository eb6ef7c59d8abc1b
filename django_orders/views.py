"""HTTP views of the orders API: they translate HTTP to the domain calls and back.

The rules live in :mod:`django_orders.services`; idempotency in
:mod:`django_orders.idempotency`; ``ETag`` / ``If-Match`` in :mod:`django_orders.conditional`.

One module past 400 lines, on purpose: it is every endpoint of the API, each a short
translation, and the mixins they share (tenant, replica reads, host serializers); a host
subclassing a view finds what it overrides beside what it inherits.
"""

from __future__ import annotations

import contextlib
import logging
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple, TypeVar

from django.db import InterfaceError, OperationalError, connections, router, transaction
from django.urls import NoReverseMatch, get_resolver, get_script_prefix, get_urlconf, reverse
from django.utils.translation import get_language
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from django_orders import problems, rls, services, sql
from django_orders.conditional import (
    etag,
    evaluate_if_match,
    if_match_version,
    if_none_match_is_newer,
    if_none_match_matches,
)
from django_orders.conf import orders_settings
from django_orders.idempotency import HEADER as IDEMPOTENCY_HEADER
from django_orders.idempotency import IdempotencyMixin
from django_orders.models import AbstractOrder, get_order_model
from django_orders.pagination import KeysetPagination
from django_orders.parsers import OrdersJSONParser
from django_orders.problems import Problem
from django_orders.renderers import JSONOnlyNegotiation, OrdersJSONRenderer
from django_orders.routers import choose_replica, remember_write, replica_reads
from django_orders.serializers import (
    OrderCloseSerializer,
    OrderCreateSerializer,
    OrderListFilterSerializer,
    StrictSerializer,
    plainly_valid_create,
    plainly_valid_filters,
    plainly_valid_transition,
)
from django_orders.tenancy import TenantScopedMixin

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

T = TypeVar("T")
logger = logging.getLogger("django_orders")


class _HostDefault:
    """The sentinel of :data:`HOST_DEFAULT`."""

    def __repr__(self) -> str:
        return "HOST_DEFAULT"


#: "The host's ``REST_FRAMEWORK`` default, read at request time": the value of
#: ``authentication_classes``, ``permission_classes`` and ``throttle_classes`` on the
#: package's views. A subclass that sets one of them replaces it, as on any DRF view.
HOST_DEFAULT: Any = _HostDefault()


class _HostSettingsAPIView(APIView):
    """An ``APIView`` whose authentication, permission and throttle classes are, unless a
    subclass sets them, the host's ``REST_FRAMEWORK`` defaults read at request time.

    DRF binds its class attributes to the defaults when the module is imported; reading
    them per request instead means a later change (``override_settings`` in the host's
    tests, say) is honoured too. Whatever a subclass sets wins, as DRF users expect.
    """

    authentication_classes = HOST_DEFAULT
    permission_classes = HOST_DEFAULT
    throttle_classes = HOST_DEFAULT

    def get_authenticators(self) -> list[Any]:
        classes = _or_host_default(self.authentication_classes, "DEFAULT_AUTHENTICATION_CLASSES")
        return [auth() for auth in classes]

    def get_permissions(self) -> list[Any]:
        classes = _or_host_default(self.permission_classes, "DEFAULT_PERMISSION_CLASSES")
        return [permission() for permission in classes]

    def get_throttles(self) -> list[Any]:
        classes = _or_host_default(self.throttle_classes, "DEFAULT_THROTTLE_CLASSES")
        return [throttle() for throttle in classes]


class OrdersAPIView(TenantScopedMixin, _HostSettingsAPIView):
    """Base of the package's views.

    Tenant-scoped. Subclass the views as any DRF view: the ``authentication_classes``,
    ``permission_classes`` and ``throttle_classes`` (with ``throttle_scope``) a subclass sets
    apply to it; where it sets none, the host's ``REST_FRAMEWORK`` defaults do. The tenant
    access permission applies in every case. Uses the package's own parser, renderer and
    error handler, so the host's global DRF settings for those are neither used nor changed
    (the contract's bodies and problems stay the same on every subclass). Mount subclasses
    with :func:`django_orders.urls.orders_urls`.
    """

    renderer_classes = (OrdersJSONRenderer,)
    parser_classes = (OrdersJSONParser,)
    content_negotiation_class = JSONOnlyNegotiation
    #: The order id of the URL (views routed with ``order_id``), parsed in :meth:`initial`.
    order_pk: uuid.UUID

    def get_exception_handler(self) -> Any:
        return problems.exception_handler

    def options(self, request: Request, *args: Any, **kwargs: Any) -> Response:  # type: ignore[override]
        """``OPTIONS``: 204 with the ``Allow`` header (every response carries it), no body.

        DRF's default answers with metadata built from the view's name and docstring,
        which describe the code, not the API; the API's description is its OpenAPI
        schema. (CORS preflights are answered by a CORS middleware before any view.)
        """
        return Response(status=204)

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        if self.tenant_id is None:
            # Only on a tenant-exempt path (system check E009 reports such a mount): the
            # orders API has nothing it could do without a tenant, so it refuses to act.
            raise Problem(
                400,
                "missing_tenant",
                "The orders API is mounted under a tenant-exempt path and cannot act "
                "without a tenant.",
            )
        meta = request._request.META
        if (
            request.method in BODY_METHODS
            and meta.get("HTTP_TRANSFER_ENCODING")
            and not meta.get("CONTENT_LENGTH")
        ):
            # WSGI gives Django no way to read a body of unknown length (chunked without
            # Content-Length): it would see an empty body and act on it, silently losing
            # what the client sent. Refuse instead (RFC 9110 §15.5.12).
            raise Problem(411, "length_required", "Send the body with a Content-Length header.")
        if "order_id" in kwargs:
            # Checked before anything of the request reaches the database — the
            # Idempotency-Key's claim (which stores the path) included: a malformed id is a
            # 404 whatever headers come with it, and never text the database cannot hold.
            self.order_pk = parse_order_id(kwargs["order_id"])

    def get_replica(self) -> str | None:
        """The replica a safe request reads from, or ``None`` for the primary
        (docs/guide/replicas.md); chosen once per request."""
        if not hasattr(self, "_replica"):
            safe = self.request.method in SAFE_METHODS
            self._replica = choose_replica(self.request._request) if safe else None
        return self._replica

    def needs_tenant_transaction(self) -> bool:
        # A read served by a replica runs in a tenant transaction there (reading()), and
        # must not cost the primary one of its own.
        return self.get_replica() is None

    def reading(self, replica: str | None) -> contextlib.AbstractContextManager[Any]:
        """The block's reads go to ``replica`` (``None``: the primary).

        Under row-level security they run in a transaction of the tenant on that
        database, unless the request's own transaction on the primary is open already.
        """
        if replica is None and (not rls.enabled() or self.tenant_transaction_using):
            return contextlib.nullcontext()  # the common case: nothing to enter
        return self._reading(replica)

    def read_replica_or_primary(
        self, read: Callable[[], T], stale: Callable[[T], bool] | None = None
    ) -> T:
        """``read()`` inside :meth:`reading` of the request's replica; if the replica
        cannot answer (down, unreachable, its connection lost, a query cancelled there),
        or ``stale(result)`` says its answer is behind what the client has seen,
        ``read()`` again on the primary instead (docs/guide/replicas.md)."""
        replica = self.get_replica()
        if replica is not None:
            try:
                with self.reading(replica):
                    result = read()
            except (OperationalError, InterfaceError) as exc:
                logger.warning("Replica %r failed, the primary answers instead: %s", replica, exc)
            else:
                if stale is None or not stale(result):
                    return result
        with self.reading(None):
            return read()

    @contextlib.contextmanager
    def _reading(self, replica: str | None) -> Iterator[None]:
        with replica_reads(replica):
            if not rls.enabled():
                yield
                return
            with rls.tenant_transaction(self.tenant_id or "", using=replica):
                yield

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)
        if request.method not in SAFE_METHODS and 200 <= response.status_code < 300:
            # The client reads its own write from the primary for a while
            # (docs/guide/replicas.md); nothing is set without READ_REPLICAS.
            remember_write(request._request, response)
        return response


class HostSerializersMixin(APIView):
    """What the handlers hand to the host's serializers and rules.

    ``get_serializer_context()`` is DRF's: ``{"request", "format", "view"}``. The same
    mapping reaches the host's rules as ``OrderChange.context`` (docs/guide/extending.md).
    """

    def get_serializer_context(self) -> dict[str, Any]:
        return {"request": self.request, "format": self.format_kwarg, "view": self}


class OrderCollectionView(HostSerializersMixin, IdempotencyMixin, OrdersAPIView):
    """``GET /orders`` (keyset-paginated list) and ``POST /orders`` (idempotent create).

    The body of a create is validated by ``create_serializer_class``, the list's filter
    parameters by ``filter_serializer_class``; ``None`` (the default) reads the
    ``CREATE_SERIALIZER`` and ``LIST_FILTER_SERIALIZER`` settings.
    """

    create_serializer_class: type[OrderCreateSerializer] | None = None
    filter_serializer_class: type[OrderListFilterSerializer] | None = None

    def get_create_serializer_class(self) -> type[OrderCreateSerializer]:
        return self.create_serializer_class or orders_settings.CREATE_SERIALIZER

    def get_filter_serializer_class(self) -> type[OrderListFilterSerializer]:
        return self.filter_serializer_class or orders_settings.LIST_FILTER_SERIALIZER

    def post(self, request: Request) -> Response:
        """Create a draft order: 201, ``Location``, ``ETag: "1"`` (docs/api/create-order.md)."""
        serializer_class = self.get_create_serializer_class()
        context = self.get_serializer_context()
        # The serializer-free path knows the package's members only: a host serializer
        # (host fields, its own validation) always sees the body.
        validated = (
            plainly_valid_create(request.data)
            if serializer_class is OrderCreateSerializer
            else None
        )
        if validated is None:  # the serializer says what is wrong (or accepts it after all)
            serializer = serializer_class(data=request.data, context=context)
            serializer.is_valid(raise_exception=True)
            validated = serializer.validated_data
        elif self._idempotency_deferred is not None:
            # The key is claimed in the statement of the writes (docs/benchmarks.md,
            # Finding 14); a key already there writes nothing and is claimed as before.
            created = self._create_claiming(request, context, validated)
            if created is not None:
                return created
        responses: list[Response] = []

        def respond(order: AbstractOrder) -> sql.Statements:
            # The response is known before the order is written: the key's stored response
            # goes in the round trip of the order and its event (docs/benchmarks.md,
            # Finding 12), not in one of its own at the end.
            responses.append(self.created_response(request, order))
            return self.store_response_statements(responses[0], router.db_for_write(type(order)))

        try:
            order = services.create_order(
                self.tenant_id or "", context=context, then=respond, **validated
            )
        except services.RuleViolation as exc:
            raise refused(exc) from None
        return responses[0] if responses else self.created_response(request, order)

    def defers_idempotency_claim(self, request: Request, using: str) -> bool:
        # The package's own create of a plainly valid body, without host rules, event
        # enrichers or instance-signal receivers (can_claim_with_writes()): nothing of the
        # host's runs before the writes, and nothing there depends on more than the body,
        # which the fingerprint holds, so a replay or a refusal found afterwards answers
        # as it did before.
        return (
            type(self).post is OrderCollectionView.post
            and type(self).created_response is OrderCollectionView.created_response
            and self.get_create_serializer_class() is OrderCreateSerializer
            and services.can_claim_with_writes(using)
            and plainly_valid_create(request.data) is not None
        )

    def writes_in_one_statement(self, request: Request, using: str) -> bool:
        # Nothing after the statement but the response it stored, unless a subclass
        # changes the response on its way out (then stored again, in the transaction).
        # Without a key the create's writes are not one statement: they run in the
        # request's transaction, as a subclass's post() expects.
        return (
            IDEMPOTENCY_HEADER in request.headers
            and type(self).finalize_response is OrderCollectionView.finalize_response
        )

    def _create_claiming(
        self, request: Request, context: dict[str, Any], validated: dict[str, Any]
    ) -> Response | None:
        """The create whose key is claimed in its writes' statement: its 201, or ``None``
        when the key was there (then claimed now, or its replay / 422 / 409 raised)."""
        responses: list[Response] = []

        def claim(order: AbstractOrder) -> sql.KeyClaim:
            responses.append(self.created_response(request, order))
            return self.claim_statement(responses[0])

        services.create_order(self.tenant_id or "", context=context, claim=claim, **validated)
        return responses[0] if self.deferred_claim_taken() else None

    def created_response(self, request: Request, order: AbstractOrder) -> Response:
        """The 201 of a create: the order, its ``ETag`` and ``Location``."""
        location = request.build_absolute_uri(order_url(request, "order-detail", order))
        return order_response(order, status=201, headers={"Location": location})

    def get(self, request: Request) -> Response:
        """The tenant's orders, newest first, keyset-paginated (docs/api/list-orders.md).

        One query.
        """
        filter_class = self.get_filter_serializer_class()
        params = request.query_params
        validated = None
        if filter_class is OrderListFilterSerializer:  # the serializer-free path, as create's
            validated = plainly_valid_filters(params)
            names = tuple(OrderListFilterSerializer._declared_fields)
        if validated is None:
            filters = filter_class(data=params.dict(), context=self.get_serializer_context())
            if not filters.is_valid():
                messages = next(iter(filters.errors.values()))
                raise Problem(400, "invalid_filter", str(messages[0]), errors=filters.errors)
            validated, names = filters.validated_data, tuple(filters.fields)
        model = get_order_model()
        lookups = {"tenant_id": self.tenant_id, **validated}
        # The filters' values are part of a cursor's scope (docs/api/list-orders.md).
        paginator = KeysetPagination(filter_query_params=names)

        def read_page() -> tuple[list[Any], bool]:
            """The page: its instances, or (True) already its documents."""
            # The router answers for the replica inside reading(), so ``using`` is looked
            # up there (docs/guide/replicas.md).
            using = router.db_for_read(model)
            connection = connections[using]
            if (
                filter_class is not OrderListFilterSerializer
                or not sql.plain_manager(model)
                or connection.vendor not in paginator.row_value_vendors
            ):  # a host's filters or manager: the queryset
                orders = model._default_manager.filter(**lookups)
                return paginator.paginate_queryset(orders, request, view=self), False
            # The documents made by PostgreSQL, no instance per row (docs/benchmarks.md,
            # Finding 15; the same bytes as to_dict()'s: tests/test_list_documents.py), or
            # the instances; the page's SELECT built once, not compiled per request
            # (Finding 11).
            documents = tuple(paginator.ordering) == sql.DOCUMENT_ORDERING and (
                sql.can_fetch_documents(model, connection)
            )
            page = paginator.paginate_rows(
                model,
                lambda position, limit: sql.fetch_page(
                    using, model, lookups, paginator.ordering, position, limit, documents=documents
                ),
                request,
                key=sql.document_key if documents else None,
            )
            return page, documents

        # On a replica when READ_REPLICAS are configured, else (or if it fails) the primary.
        page, documents = self.read_replica_or_primary(read_page)
        return paginator.get_paginated_response(
            page if documents else [order.to_dict() for order in page]
        )


class OrderDetailView(OrdersAPIView):
    """``GET /orders/{id}``: the order with its ``ETag``; 304 on a matching ``If-None-Match``."""

    def get(self, request: Request, order_id: str) -> Response:
        if_none_match = request.headers.get("If-None-Match")
        # The replica may be behind (docs/guide/replicas.md): an order it does not have
        # yet, or older than a version the client was given, is read again from the
        # primary, so a client never sees its order vanish or go back in time.
        order = self.read_replica_or_primary(
            self.get_order,
            stale=lambda order: (
                order is None or if_none_match_is_newer(if_none_match, order.version)
            ),
        )
        if order is None:
            raise not_found()
        if if_none_match_matches(if_none_match, order.version):
            # RFC 9110 §15.4.5: no body, but the ETag the 200 would have carried.
            return Response(status=304, headers={"ETag": etag(order.version)})
        return order_response(order)

    def get_order(self) -> AbstractOrder | None:
        """The tenant's order of the URL, or ``None``; read where the router says."""
        model = get_order_model()
        try:
            return model._default_manager.get(tenant_id=self.tenant_id, pk=self.order_pk)
        except model.DoesNotExist:
            return None


class _IfCurrent(NamedTuple):
    """What a transition in one conditional statement is made with."""

    #: The version the ``If-Match`` tag names.
    version: int
    #: The validated body.
    data: dict[str, Any]


class OrderTransitionView(HostSerializersMixin, IdempotencyMixin, OrdersAPIView):
    """Base of confirm and close, in the order of checks of docs/api/confirm-order.md.

    Tenant (400) and access (403) run in ``initial()``, then the idempotency key and the
    body's JSON; the handler then locks the order (404), evaluates ``If-Match`` (428, 400,
    412), validates the body with ``get_serializer_class()`` (400) and asks the domain
    layer for the transition (409), which asks the host's rules (their 409 / 422).
    The whole runs in the mixin's transaction, so the lock holds until commit: of N
    concurrent requests with the same ``If-Match`` exactly one succeeds.

    On PostgreSQL, a request without an ``Idempotency-Key``, with one strong ``If-Match``
    tag and a plainly valid body, to the package's own views with nothing of the host's
    to run (no rules, enrichers, receivers of the instances' signals, own ``to_dict()``)
    is first tried as one conditional statement — the ``UPDATE … WHERE version = %s AND
    status = %s``, its event and ``NOTIFY``; in autocommit unless a transaction is open
    already — which the database makes atomic: of N concurrent ones, one changes the row
    (docs/benchmarks.md, Finding 16).
    If it changes nothing, the steps above give the answer (404, 412, 409).
    """

    idempotency_key_required = False
    serializer_class: type[StrictSerializer] | None = None
    #: The inputs of this request's one conditional statement, once
    #: :meth:`_if_current_inputs` found them; ``None`` until then, or if there are none.
    _if_current: _IfCurrent | None = None

    def get_serializer_class(self) -> type[StrictSerializer]:
        assert self.serializer_class is not None, f"{type(self).__name__}.serializer_class"
        return self.serializer_class

    def apply(
        self, order: AbstractOrder, data: dict[str, Any], context: dict[str, Any]
    ) -> AbstractOrder:
        """Make the transition on the locked ``order`` with the validated body."""
        raise NotImplementedError

    def apply_if_current(
        self, version: int, data: dict[str, Any], then: Callable[[AbstractOrder], object]
    ) -> AbstractOrder | None:
        """Make the transition in one statement if the order is at ``version`` and in the
        status it leaves, calling ``then(order)`` before the signal is sent; the changed
        order, or ``None`` (nothing written)."""
        raise NotImplementedError

    def writes_in_one_statement(self, request: Request, using: str) -> bool:
        # Asked without an Idempotency-Key (a key keeps its claim and the locked path),
        # before the mixin looks for an open transaction: transition() then makes the
        # one statement in autocommit, or in the transaction that is open.
        return self._if_current_inputs(request, using) is not None

    def _if_current_inputs(self, request: Request, using: str) -> _IfCurrent | None:
        """The ``If-Match`` version and the validated body of this request's transition
        in one conditional statement, or ``None``: the locked path.

        With one strong ``If-Match`` tag, a plainly valid body and nothing of the host's
        to run or to show, the transition is one conditional statement
        (docs/benchmarks.md, Finding 16); if it changes nothing, transition() answers on
        the locked row, in a transaction of its own. Found once, when the mixin asks
        :meth:`writes_in_one_statement`, and kept in ``_if_current`` for transition():
        the tag is parsed and the body validated once.
        """
        if self._if_current is None:
            version = if_match_version(request.headers.get("If-Match"))
            if version is None or not self._transitions_as_the_package_does():
                return None
            data = plainly_valid_transition(self.get_serializer_class(), request.data)
            if data is None or not services.can_transition_in_one_statement(using):
                return None
            self._if_current = _IfCurrent(version, data)
        return self._if_current

    def _transitions_as_the_package_does(self) -> bool:
        """Whether this view's handler, transition, response and answer to the mixin
        (``writes_in_one_statement``) are the package's confirm or close: a subclass
        overriding one of them runs its code in the request's transaction, on the locked
        order, as before."""
        cls = type(self)
        own = OrderConfirmView if issubclass(cls, OrderConfirmView) else OrderCloseView
        return issubclass(cls, own) and all(
            getattr(cls, name) is getattr(own, name)
            for name in (
                "patch" if own is OrderConfirmView else "post",
                "transition",
                "apply",
                "apply_if_current",
                "finalize_response",
                "writes_in_one_statement",
            )
        )

    def transition(self, request: Request, order_id: str) -> Response:
        model = get_order_model()
        using = router.db_for_write(model)
        # Found when the mixin asked writes_in_one_statement(), which it does not for a
        # request with an Idempotency-Key: that one takes the locked path.
        if_current = self._if_current
        if if_current is not None:
            # In autocommit when no transaction is open (the mixin opened none); in the
            # one that is (ATOMIC_REQUESTS, row-level security's tenant transaction,
            # whose policies then bind the statement) otherwise.
            # The answer is made before the signal's receivers get the instance, as the
            # locked path's is before its commit (found in review).
            answer: list[Response] = []
            changed = self.apply_if_current(
                if_current.version,
                if_current.data,
                then=lambda order: answer.append(order_response(order)),
            )
            if changed is not None:
                return answer[0]
            # Not changed: missing, another version or status. The locked path says which.
        with transaction.atomic(using=using, savepoint=False):
            try:
                order = services.get_order_for_update(self.tenant_id or "", self.order_pk)
            except model.DoesNotExist:
                raise not_found() from None
            evaluate_if_match(
                request.headers.get("If-Match"),
                order.version,
                required=orders_settings.REQUIRE_IF_MATCH,
            )
            context = self.get_serializer_context()
            serializer_class = self.get_serializer_class()
            data = plainly_valid_transition(serializer_class, request.data)
            if data is None:  # the serializer says what is wrong (or accepts it after all)
                serializer = serializer_class(data=request.data, context=context)
                serializer.is_valid(raise_exception=True)
                data = dict(serializer.validated_data)
            try:
                self.apply(order, data, context)
            except services.InvalidTransition as exc:
                raise Problem(
                    409, "invalid_transition", str(exc), currentStatus=str(exc.order.status)
                ) from None
            except services.RuleViolation as exc:
                raise refused(exc) from None
        return order_response(order)


class OrderConfirmView(OrderTransitionView):
    """``PATCH /orders/{id}/confirm``: draft → confirmed, setting ``totalCents``.

    ``serializer_class`` ``None`` (the default) reads the ``CONFIRM_SERIALIZER`` setting.
    """

    def get_serializer_class(self) -> type[StrictSerializer]:
        return self.serializer_class or orders_settings.CONFIRM_SERIALIZER

    def apply(
        self, order: AbstractOrder, data: dict[str, Any], context: dict[str, Any]
    ) -> AbstractOrder:
        return services.confirm_order(order, context=context, **data)

    def apply_if_current(
        self, version: int, data: dict[str, Any], then: Callable[[AbstractOrder], object]
    ) -> AbstractOrder | None:
        return services.confirm_if_current(
            self.tenant_id or "", self.order_pk, version, then=then, **data
        )

    def patch(self, request: Request, order_id: str) -> Response:
        return self.transition(request, order_id)


class OrderCloseView(OrderTransitionView):
    """``POST /orders/{id}/close``: confirmed → closed, with its ``order.closed`` event."""

    serializer_class = OrderCloseSerializer

    def apply(
        self, order: AbstractOrder, data: dict[str, Any], context: dict[str, Any]
    ) -> AbstractOrder:
        return services.close_order(order, context=context)

    def apply_if_current(
        self, version: int, data: dict[str, Any], then: Callable[[AbstractOrder], object]
    ) -> AbstractOrder | None:
        return services.close_if_current(self.tenant_id or "", self.order_pk, version, then=then)

    def post(self, request: Request, order_id: str) -> Response:
        return self.transition(request, order_id)


def refused(exc: services.RuleViolation) -> Problem:
    """The problem a host rule refused a change with."""
    return Problem(exc.status, exc.code, exc.detail, **exc.extensions)


def _or_host_default(classes: Any, setting: str) -> Any:
    """``classes``, or the classes the host's ``REST_FRAMEWORK[setting]`` lists, imported."""
    return getattr(api_settings, setting) if classes is HOST_DEFAULT else classes


# The canonical 8-4-4-4-12 form only (either case): uuid.UUID() would also take braces,
# a "urn:uuid:" prefix or 32 bare hex digits, giving one order several URLs.
_UUID_PATTERN = re.compile(r"\A[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}\Z")


def parse_order_id(value: str) -> uuid.UUID:
    """The order id of the URL, or 404: a malformed id is just another missing order."""
    if not _UUID_PATTERN.match(value):
        raise not_found()
    return uuid.UUID(value)


def not_found() -> Problem:
    return Problem(404, "not_found", "No such order.")


def order_url(request: Request, name: str, order: AbstractOrder) -> str:
    """The path of ``order``'s route ``name`` under wherever the host mounted the URLs.

    ``reverse()`` once per route, URL configuration, script prefix and language, with a
    placeholder id that the order's then replaces (docs/benchmarks.md, Finding 14): the
    routes take any segment, and a UUID's text needs no quoting, so the path is the one
    ``reverse()`` gives. Another kind of id goes through ``reverse()`` each time.
    """
    match = request.resolver_match
    namespace = match.namespace if match is not None and match.namespace else "django_orders"
    if type(order.id) is uuid.UUID:
        # The resolver is get_resolver()'s cached one, new when the URLs change; the key
        # holds it, so no other resolver can take its id.
        key = (get_resolver(get_urlconf()), get_script_prefix(), get_language(), namespace, name)
        template = _URL_TEMPLATES.get(key)
        if template is None:
            template = _URL_TEMPLATES[key] = _url_template(namespace, name)
        if template:
            return template.replace(_PLACEHOLDER_ID, str(order.id))
    return _reverse_order_url(namespace, name, str(order.id))


_PLACEHOLDER_ID = "ffffffff-ffff-4fff-bfff-ffffffffffff"
#: Route paths with the placeholder id, "" where it cannot serve (see order_url()).
_URL_TEMPLATES: dict[tuple[Any, ...], str] = {}


def _url_template(namespace: str, name: str) -> str:
    try:
        template = _reverse_order_url(namespace, name, _PLACEHOLDER_ID)
    except NoReverseMatch:  # pragma: no cover - a host route refusing the placeholder
        return ""
    return template if template.count(_PLACEHOLDER_ID) == 1 else ""


def _reverse_order_url(namespace: str, name: str, order_id: str) -> str:
    try:
        return reverse(f"{namespace}:{name}", kwargs={"order_id": order_id})
    except NoReverseMatch:  # pragma: no cover - mounted under another instance namespace
        return reverse(f"django_orders:{name}", kwargs={"order_id": order_id})


def order_response(
    order: AbstractOrder, *, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """The order as JSON (docs/api/README.md) with its ``ETag``."""
    return Response(
        order.to_dict(), status=status, headers={"ETag": etag(order.version), **(headers or {})}
    )
