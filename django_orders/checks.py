"""System checks: misconfiguration is reported by ``manage.py check``, not at request time.

Ids are numbered and never reused; docs/reference/checks.md lists them.

- ``django_orders.E001`` ``DJANGO_ORDERS`` is not a dict, or has unknown keys.
- ``django_orders.E002`` a dotted-path setting does not import.
- ``django_orders.E003`` ``TENANT_ID_PATTERN`` is not a valid regular expression.
- ``django_orders.E004`` ``PAGE_SIZE`` / ``MAX_PAGE_SIZE`` out of range.
- ``django_orders.E005`` ``TenantMiddleware`` missing from ``MIDDLEWARE``.
- ``django_orders.E006`` a removed setting is used.
- ``django_orders.E007`` a duration setting is neither a timedelta nor seconds.
- ``django_orders.E008`` an outbox or body-size number is out of range.
- ``django_orders.E009`` the orders URLs are mounted under a tenant-exempt path.
- ``django_orders.W001`` (deploy) no ``TENANT_ACCESS_CHECK`` while ``DEBUG`` is off.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured

from django_orders.conf import (
    DEFAULTS,
    DURATIONS,
    IMPORT_STRINGS,
    REMOVED_SETTINGS,
    SETTING_NAME,
    import_from_string,
    to_timedelta,
)

MIDDLEWARE_PATH = "django_orders.middleware.TenantMiddleware"


def _user_settings() -> Mapping[str, Any] | None:
    value = getattr(settings, SETTING_NAME, {})
    return value if isinstance(value, Mapping) else None


@register(Tags.compatibility)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    user = _user_settings()
    if user is None:
        return [Error(f"{SETTING_NAME} must be a dict.", id="django_orders.E001")]
    errors: list[Any] = []
    for key in user:
        if key in REMOVED_SETTINGS:
            errors.append(
                Error(
                    f"{SETTING_NAME}[{key!r}] was removed.",
                    hint=REMOVED_SETTINGS[key],
                    id="django_orders.E006",
                )
            )
        elif key not in DEFAULTS:
            errors.append(
                Error(
                    f"{SETTING_NAME} has an unknown key {key!r}.",
                    hint="See docs/reference/settings.md for the valid keys.",
                    id="django_orders.E001",
                )
            )

    def value(key: str) -> Any:
        return user.get(key, DEFAULTS[key])

    for key in sorted(IMPORT_STRINGS):
        path = value(key)
        if isinstance(path, str):
            try:
                import_from_string(path, key)
            except ImportError as exc:
                errors.append(Error(str(exc), id="django_orders.E002"))

    pattern = value("TENANT_ID_PATTERN")
    if not isinstance(pattern, re.Pattern):
        try:
            re.compile(pattern)
        except (re.error, TypeError) as exc:
            errors.append(
                Error(
                    f"{SETTING_NAME}['TENANT_ID_PATTERN'] is not a valid regular expression: "
                    f"{exc}.",
                    id="django_orders.E003",
                )
            )

    page_size, max_page_size = value("PAGE_SIZE"), value("MAX_PAGE_SIZE")
    if not _is_int(max_page_size) or max_page_size < 1:
        errors.append(
            Error(
                f"{SETTING_NAME}['MAX_PAGE_SIZE'] must be an integer ≥ 1.", id="django_orders.E004"
            )
        )
    elif not _is_int(page_size) or not 1 <= page_size <= max_page_size:
        errors.append(
            Error(
                f"{SETTING_NAME}['PAGE_SIZE'] must be an integer from 1 to MAX_PAGE_SIZE "
                f"({max_page_size}).",
                id="django_orders.E004",
            )
        )

    for key in sorted(DURATIONS):
        try:
            duration = to_timedelta(value(key), key)
        except ImproperlyConfigured as exc:
            errors.append(Error(str(exc), id="django_orders.E007"))
        else:
            if duration.total_seconds() <= 0:
                errors.append(
                    Error(f"{SETTING_NAME}[{key!r}] must be positive.", id="django_orders.E007")
                )

    for key in ("OUTBOX_BATCH_SIZE", "OUTBOX_MAX_ATTEMPTS", "MAX_BODY_BYTES"):
        if not _is_int(value(key)) or value(key) < 1:
            errors.append(
                Error(f"{SETTING_NAME}[{key!r}] must be an integer ≥ 1.", id="django_orders.E008")
            )
    poll = value("OUTBOX_POLL_INTERVAL")
    if not isinstance(poll, int | float) or isinstance(poll, bool) or poll <= 0:
        errors.append(
            Error(
                f"{SETTING_NAME}['OUTBOX_POLL_INTERVAL'] must be a positive number of seconds.",
                id="django_orders.E008",
            )
        )
    return errors


@register(Tags.compatibility)
def check_middleware(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    if MIDDLEWARE_PATH in getattr(settings, "MIDDLEWARE", []):
        return []
    return [
        Error(
            f"{MIDDLEWARE_PATH!r} is not in MIDDLEWARE.",
            hint="Add it so tenant-scoped views resolve the tenant and reset it after each "
            "request.",
            id="django_orders.E005",
        )
    ]


@register(Tags.urls)
def check_urls_not_exempt(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    from django.urls import NoReverseMatch, reverse

    from django_orders.tenancy import is_exempt_path

    try:
        path = reverse("django_orders:order-list")
    except (NoReverseMatch, ImportError):
        return []  # not mounted (yet), or mounted under another namespace: nothing to say
    if not is_exempt_path(path):
        return []
    return [
        Error(
            f"The orders API is mounted at {path!r}, under a TENANT_EXEMPT_PATHS prefix: "
            "its requests would have no tenant.",
            hint="Mount django_orders.urls elsewhere, or narrow TENANT_EXEMPT_PATHS.",
            id="django_orders.E009",
        )
    ]


@register(Tags.security, deploy=True)
def check_tenant_access_configured(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    user = _user_settings() or {}
    if settings.DEBUG or user.get("TENANT_ACCESS_CHECK"):
        return []
    return [
        Warning(
            "No TENANT_ACCESS_CHECK is configured: any caller can act for any tenant by "
            "sending the tenant header.",
            hint=f"Set {SETTING_NAME}['TENANT_ACCESS_CHECK'] to a callable(request, tenant_id) "
            "-> bool, or make sure a gateway in front of the API sets the header.",
            id="django_orders.W001",
        )
    ]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
