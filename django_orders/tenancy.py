"""Which tenant a request acts for, and how a view says it is tenant-scoped.

The tenant is resolved by the ``TENANT_RESOLVER`` hook (default: the ``X-Tenant-Id``
header) for tenant-scoped views only: the package's own, and a host's views marked with
:class:`TenantScopedMixin` (DRF class-based views) or :func:`tenant_scoped` (function
views). Everything else in the host project is left alone.

The current tenant lives in a :class:`~contextvars.ContextVar` that
:class:`~django_orders.middleware.TenantMiddleware` resets after every request, so it never
leaks into the next request served by the same thread.
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

from django_orders.conf import orders_settings
from django_orders.problems import Problem

# The width of every tenant_id column, as django_orders.models.TENANT_ID_MAX_LENGTH (a
# test keeps the two equal): this module stays importable without the models, which need
# the app registry.
TENANT_ID_MAX_LENGTH = 64

_current_tenant: ContextVar[str | None] = ContextVar("django_orders_tenant", default=None)

ViewT = TypeVar("ViewT", bound=Callable[..., Any])


def get_current_tenant() -> str | None:
    """The tenant of the request being served, or ``None`` outside a tenant-scoped view."""
    return _current_tenant.get()


def header_tenant_resolver(request: HttpRequest) -> str | None:
    """The default ``TENANT_RESOLVER``: the value of the ``TENANT_HEADER`` header."""
    return request.headers.get(orders_settings.TENANT_HEADER)


def _compiled_pattern() -> re.Pattern[str]:
    pattern = orders_settings.TENANT_ID_PATTERN
    return pattern if isinstance(pattern, re.Pattern) else re.compile(pattern)


def resolve_tenant(request: HttpRequest) -> str:
    """Resolve and validate the request's tenant, raising a 400 :class:`Problem`."""
    tenant = orders_settings.TENANT_RESOLVER(request)
    if not tenant:
        raise Problem(
            400,
            "missing_tenant",
            f"The {orders_settings.TENANT_HEADER} header is required.",
        )
    # These two hold whatever TENANT_ID_PATTERN a host configures: a longer id does not
    # fit the 64-character tenant columns, and PostgreSQL cannot store a NUL; either
    # would be a 500 (docs/api/README.md: no request gets a 5xx).
    if (
        not isinstance(tenant, str)
        or len(tenant) > TENANT_ID_MAX_LENGTH
        or "\x00" in tenant
        or not _compiled_pattern().fullmatch(tenant)
    ):
        raise Problem(
            400,
            "invalid_tenant",
            f"The {orders_settings.TENANT_HEADER} header is not a valid tenant id.",
        )
    return tenant


def is_exempt_path(path: str) -> bool:
    """Whether ``path`` (the request's ``path_info``) needs no tenant."""
    return any(path.startswith(prefix) for prefix in orders_settings.TENANT_EXEMPT_PATHS)


def is_tenant_scoped(view_func: Callable[..., Any]) -> bool:
    """Whether a resolved view function was marked tenant-scoped."""
    if getattr(view_func, "tenant_scoped", False):
        return True
    # DRF's as_view() sets .cls, Django's sets .view_class.
    for attr in ("cls", "view_class"):
        view_class = getattr(view_func, attr, None)
        if view_class is not None and getattr(view_class, "tenant_scoped", False):
            return True
    return False


def activate_tenant(request: HttpRequest) -> Problem | None:
    """Resolve the tenant for a tenant-scoped view and make it current.

    Returns the problem to answer with instead, if any. Sets ``request.tenant_id``
    (``None`` on exempt paths).
    """
    if getattr(request, "_orders_tenant_resolved", False):
        return None
    if is_exempt_path(request.path_info):
        request.tenant_id = None  # type: ignore[attr-defined]
    else:
        try:
            tenant = resolve_tenant(request)
        except Problem as problem:
            return problem
        request.tenant_id = tenant  # type: ignore[attr-defined]
        _current_tenant.set(tenant)
    request._orders_tenant_resolved = True  # type: ignore[attr-defined]
    return None


def tenant_forbidden() -> Problem:
    """403 ``tenant_forbidden``: the access hook refused the caller for this tenant."""
    return Problem(403, "tenant_forbidden", "You may not act for this tenant.")


def check_tenant_access(request: Any, tenant_id: str | None) -> bool:
    """Run the ``TENANT_ACCESS_CHECK`` hook; no hook configured means allowed."""
    check = orders_settings.TENANT_ACCESS_CHECK
    if check is None or tenant_id is None:
        return True
    return bool(check(request, tenant_id))


class TenantScopedMixin:
    """Mark a DRF view as tenant-scoped and add the tenant access permission.

    The middleware resolves the tenant before the view runs (400 ``missing_tenant`` /
    ``invalid_tenant``); DRF then authenticates the caller and
    :class:`~django_orders.permissions.TenantAccessPermission` asks the
    ``TENANT_ACCESS_CHECK`` hook whether that caller may act for the tenant (403
    ``tenant_forbidden``). ``self.tenant_id`` is the tenant.
    """

    tenant_scoped = True

    @property
    def tenant_id(self) -> str | None:
        return getattr(self.request, "tenant_id", None)  # type: ignore[attr-defined]

    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        # Without the middleware, initial() below is what sets the current tenant: put
        # back what was there before, so it never outlives the request on this thread.
        with _tenant_restored():
            return super().dispatch(request, *args, **kwargs)  # type: ignore[misc]

    def initial(self, request: Any, *args: Any, **kwargs: Any) -> None:
        # Defence in depth: without the middleware (a system check reports that), resolve
        # the tenant here so a scoped view never runs unscoped.
        problem = activate_tenant(request._request)
        if problem is not None:
            raise problem
        request.tenant_id = request._request.tenant_id
        super().initial(request, *args, **kwargs)  # type: ignore[misc]

    def finalize_response(self, request: Any, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(  # type: ignore[misc]
            request, response, *args, **kwargs
        )
        # The representation depends on the tenant header, not only on the URL: say so,
        # or a shared cache could answer one tenant with another's (RFC 9110 §12.5.5).
        patch_vary_headers(response, (orders_settings.TENANT_HEADER,))
        return response

    def handle_exception(self, exc: Exception) -> Any:
        # The package's problems (tenant_forbidden, …) are problem+json even on a host view
        # whose global DRF exception handler renders errors differently.
        if isinstance(exc, Problem):
            from django_orders.problems import exception_handler

            response = exception_handler(exc, {"view": self})
            if response is not None:
                response.exception = True
                return response
        return super().handle_exception(exc)  # type: ignore[misc]

    def get_permissions(self) -> list[Any]:
        from django_orders.permissions import TenantAccessPermission

        permissions = list(super().get_permissions())  # type: ignore[misc]
        return [*permissions, TenantAccessPermission()]


def tenant_scoped(view: ViewT) -> ViewT:
    """Mark a function view (or a DRF class view) as tenant-scoped.

    For a function view the access hook runs with Django's ``request.user``; for DRF
    class-based views prefer :class:`TenantScopedMixin`, whose check runs after DRF
    authentication (tokens, JWT).
    """
    if isinstance(view, type):
        view.tenant_scoped = True  # type: ignore[attr-defined]
        return view

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        with _tenant_restored():
            response = _call_scoped(view, request, *args, **kwargs)
        patch_vary_headers(response, (orders_settings.TENANT_HEADER,))
        return response

    wrapper.tenant_scoped = True  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


def _call_scoped(view: Callable[..., Any], request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
    """Run a ``@tenant_scoped`` function view: resolve the tenant, ask the access hook."""
    problem = activate_tenant(request)
    if problem is not None:
        return problem.as_response()
    if not check_tenant_access(request, getattr(request, "tenant_id", None)):
        return tenant_forbidden().as_response()
    return view(request, *args, **kwargs)


@contextlib.contextmanager
def _tenant_restored() -> Iterator[None]:
    """Put the current tenant back as it was on entry, however the block ends.

    The middleware does this around the whole request; a scoped view does it too, so the
    tenant it sets never leaks into the thread's next request when the host forgot the
    middleware (system check ``django_orders.E005`` reports that).
    """
    token = _current_tenant.set(_current_tenant.get())
    try:
        yield
    finally:
        _current_tenant.reset(token)
