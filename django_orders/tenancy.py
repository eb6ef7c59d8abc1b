"""Which tenant a request acts for, and how a view says it is tenant-scoped.

The tenant is resolved by the ``TENANT_RESOLVER`` hook (default: the ``X-Tenant-Id``
header), in one place, :func:`resolve_tenant`, for tenant-scoped views only: the package's
own and a host's views built on :class:`TenantScopedMixin` (DRF class-based views) or
decorated with :func:`tenant_scoped` (function views). Everything else in the host project
is left alone.

On a DRF view the tenant is resolved after DRF authentication and the view's own
permissions, so a resolver can derive the tenant from ``request.user`` or ``request.auth``
whatever authenticated them (session, token, JWT), and an anonymous caller of a view that
requires authentication gets the host's 401/403 rather than a tenant error.

The current tenant lives in a :class:`~contextvars.ContextVar` that only
:func:`tenant_context` sets and restores: the views enter it for the rest of the request,
so a tenant never outlives its request on a thread.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any, TypeVar

from django.http import HttpRequest, HttpResponse
from django.utils.cache import patch_vary_headers
from rest_framework.exceptions import APIException

from django_orders import rls
from django_orders.conf import orders_settings
from django_orders.context import bound
from django_orders.permissions import TenantAccessPermission, check_tenant_access
from django_orders.problems import Problem, as_problem, exception_handler

# The width of every tenant_id column, as django_orders.models.TENANT_ID_MAX_LENGTH (a
# test keeps the two equal): this module stays importable without the models, which need
# the app registry.
TENANT_ID_MAX_LENGTH = 64

_current_tenant: ContextVar[str | None] = ContextVar("django_orders_tenant", default=None)

ViewT = TypeVar("ViewT", bound=Callable[..., Any])
ResolverT = TypeVar("ResolverT", bound=Callable[..., Any])


def get_current_tenant() -> str | None:
    """The current tenant: the request's inside a tenant-scoped view, else ``None``
    (or what an enclosing :func:`tenant_context` set)."""
    return _current_tenant.get()


@contextlib.contextmanager
def tenant_context(tenant_id: str | None) -> Iterator[None]:
    """Make ``tenant_id`` the current tenant inside the block; restore the previous one on
    the way out, however the block ends.

    For code that runs outside a request — management commands, tasks, tests::

        with tenant_context("shop-1"):
            assert get_current_tenant() == "shop-1"

    The id is taken as given (no ``TENANT_ID_PATTERN`` check): the caller is trusted code.
    """
    with bound(_current_tenant, tenant_id):
        yield


def header_tenant_resolver(request: Any) -> str | None:
    """The default ``TENANT_RESOLVER``: the value of the ``TENANT_HEADER`` header."""
    return request.headers.get(orders_settings.TENANT_HEADER)


def tenant_source(description: str) -> Callable[[ResolverT], ResolverT]:
    """Say where a ``TENANT_RESOLVER`` takes the tenant from, for its error messages.

    ``description`` is a noun phrase, e.g. ``"the authenticated user's username"``; the
    400s then read "The authenticated user's username is required." instead of naming a
    header the client never sent. Sets the resolver's ``tenant_source`` attribute (which a
    callable object may also define itself).
    """

    def mark(resolver: ResolverT) -> ResolverT:
        resolver.tenant_source = description  # type: ignore[attr-defined]
        return resolver

    return mark


def _source(resolver: Any) -> str:
    """Where ``resolver`` takes the tenant from, as the start of a sentence."""
    source = getattr(resolver, "tenant_source", None) or (
        f"the {orders_settings.TENANT_HEADER} header"
    )
    return source[:1].upper() + source[1:]


def _compiled_pattern() -> re.Pattern[str]:
    pattern = orders_settings.TENANT_ID_PATTERN
    return pattern if isinstance(pattern, re.Pattern) else re.compile(pattern)


def is_exempt_path(path: str) -> bool:
    """Whether ``path`` (the request's ``path_info``) needs no tenant."""
    return any(path.startswith(prefix) for prefix in orders_settings.TENANT_EXEMPT_PATHS)


def resolve_tenant(request: Any) -> str | None:
    """The request's tenant, validated; ``None`` on a tenant-exempt path.

    Runs the ``TENANT_RESOLVER`` hook with ``request`` (on a DRF view the DRF ``Request``,
    authenticated). Raises a 400 :class:`Problem` (``missing_tenant``, ``invalid_tenant``)
    naming the resolver's source; whatever the hook raises itself propagates (the views
    answer a :class:`Problem` or any DRF ``APIException`` as a problem of its status).
    """
    if is_exempt_path(request.path_info):
        return None
    resolver = orders_settings.TENANT_RESOLVER
    tenant = resolver(request)
    if tenant is None or tenant == "":
        raise Problem(400, "missing_tenant", f"{_source(resolver)} is required.")
    # The length and NUL checks hold whatever TENANT_ID_PATTERN a host configures: a longer
    # id does not fit the 64-character tenant columns, and PostgreSQL cannot store a NUL;
    # either would be a 500 (docs/api/README.md: no request gets a 5xx).
    if (
        not isinstance(tenant, str)
        or len(tenant) > TENANT_ID_MAX_LENGTH
        or "\x00" in tenant
        or not _compiled_pattern().fullmatch(tenant)
    ):
        raise Problem(400, "invalid_tenant", f"{_source(resolver)} is not a valid tenant id.")
    return tenant


def _vary_on_tenant(response: Any) -> None:
    # The representation depends on the tenant header, not only on the URL: say so, or a
    # shared cache could answer one tenant with another's (RFC 9110 §12.5.5).
    patch_vary_headers(response, (orders_settings.TENANT_HEADER,))


class TenantScopedMixin:
    """Make a DRF view tenant-scoped. ``self.tenant_id`` (and ``request.tenant_id``) is the
    tenant, and it is the current tenant (:func:`get_current_tenant`) until the response
    is done.

    In DRF's ``initial()``, after authentication, the checks run in this order: the view's
    own permissions (its ``permission_classes`` or the host's defaults: 401/403), the
    tenant (400 ``missing_tenant`` / ``invalid_tenant``), the access hook
    (:class:`~django_orders.permissions.TenantAccessPermission`, 403 ``tenant_forbidden``),
    then DRF's throttles.
    """

    @property
    def tenant_id(self) -> str | None:
        return getattr(self.request, "tenant_id", None)  # type: ignore[attr-defined]

    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        # initial() enters the tenant's context on this stack: it ends with the response,
        # after finalize_response(), however the request ends.
        with contextlib.ExitStack() as self._tenant_scope:
            return super().dispatch(request, *args, **kwargs)  # type: ignore[misc]

    def check_permissions(self, request: Any) -> None:
        # DRF calls this from initial(), after authentication and before the throttles.
        # No side effect but request.tenant_id: DRF's browsable API calls it again while
        # rendering, after dispatch() is over.
        super().check_permissions(request)  # type: ignore[misc]
        request._request.tenant_id = resolve_tenant(request)  # the DRF Request reads it through
        TenantAccessPermission().has_permission(request, self)

    def initial(self, request: Any, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # type: ignore[misc]
        self._tenant_scope.enter_context(tenant_context(self.tenant_id))
        self.tenant_transaction_using: str | None = None
        if self.tenant_id is not None and rls.enabled() and self.needs_tenant_transaction():
            # Row-level security (docs/guide/row-level-security.md): the whole request
            # runs in one transaction in which the database shows this tenant's rows only.
            self.tenant_transaction_using = self._tenant_scope.enter_context(
                rls.tenant_transaction(self.tenant_id)
            )

    def needs_tenant_transaction(self) -> bool:
        """Whether, under row-level security, the request runs in a transaction of its
        tenant on the order model's database (the primary). ``True``; the package's read
        views answer ``False`` when they read from a replica, and open their own there."""
        return True

    def finalize_response(self, request: Any, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(  # type: ignore[misc]
            request, response, *args, **kwargs
        )
        _vary_on_tenant(response)
        return response

    def handle_exception(self, exc: Exception) -> Any:
        # The package's problems (tenant_forbidden, …) are problem+json even on a host view
        # whose global DRF exception handler renders errors differently.
        if isinstance(exc, Problem):
            response = exception_handler(exc, {"view": self})
            if response is not None:
                response.exception = True
                return response
        return super().handle_exception(exc)  # type: ignore[misc]


def tenant_scoped(view: ViewT) -> ViewT:
    """Make a function view tenant-scoped: resolve the tenant, ask the access hook (both
    with Django's ``request.user``), and make the tenant current while the view runs.

    ``request.tenant_id`` is the tenant. For a DRF class-based view use
    :class:`TenantScopedMixin` instead (its checks run after DRF authentication); for a
    Django class-based view, ``method_decorator(tenant_scoped, name="dispatch")``.
    """
    if isinstance(view, type):
        raise TypeError(
            f"@tenant_scoped decorates function views, not the class {view.__qualname__}: "
            "give a DRF view TenantScopedMixin as a base, or decorate a Django view's "
            'dispatch with method_decorator(tenant_scoped, name="dispatch").'
        )

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            request.tenant_id = resolve_tenant(request)  # type: ignore[attr-defined]
            check_tenant_access(request)
        except APIException as exc:
            response: HttpResponse = as_problem(exc).as_response()
        else:
            tenant = request.tenant_id  # type: ignore[attr-defined]
            with contextlib.ExitStack() as scope:
                scope.enter_context(tenant_context(tenant))
                if tenant is not None and rls.enabled():
                    scope.enter_context(rls.tenant_transaction(tenant))
                response = view(request, *args, **kwargs)
        _vary_on_tenant(response)
        return response

    return wrapper  # type: ignore[return-value]
