"""System checks: misconfiguration is reported by ``manage.py check``, not at request time.

Ids are numbered and never reused; docs/reference/checks.md lists them. Every check of the
package is in this one module, in the order of that page (hence its length): a reader
looking for what ``manage.py check`` says about django-orders finds all of it here.
``DjangoOrdersConfig.ready()`` registers them, each with its tags.

- ``django_orders.E001`` ``DJANGO_ORDERS`` is not a dict, or has unknown keys.
- ``django_orders.E002`` a dotted-path setting does not import.
- ``django_orders.E003`` ``TENANT_ID_PATTERN`` is not a valid regular expression.
- ``django_orders.E004`` ``PAGE_SIZE`` / ``MAX_PAGE_SIZE`` out of range.
- ``django_orders.E005`` retired (``TenantMiddleware`` is no longer needed).
- ``django_orders.E006`` a removed setting is used.
- ``django_orders.E007`` a duration setting is neither a timedelta nor seconds.
- ``django_orders.E008`` an outbox or body-size number is out of range.
- ``django_orders.E009`` a route of the orders API is mounted under a tenant-exempt path.
- ``django_orders.E010`` the order model in force does not subclass ``AbstractOrder``.
- ``django_orders.E011`` a serializer setting names a class that does not extend the
  package's serializer it replaces.
- ``django_orders.E012`` an entry of ``ORDER_RULES`` is not callable.
- ``django_orders.E013`` a field of the create or confirm serializer writes to something
  that is neither one of the members the action takes nor a host field of the order model.
- ``django_orders.W001`` (deploy) the tenant comes from the header and no
  ``TENANT_ACCESS_CHECK`` is set, while ``DEBUG`` is off.
- ``django_orders.W002`` a webhook secret not in the Standard Webhooks form ``whsec_<base64>``.
- ``django_orders.W003`` the no-longer-needed ``TenantMiddleware`` is in ``MIDDLEWARE``.
- ``django_orders.E014`` ``EVENT_TYPE_PREFIX`` is not a reverse-DNS prefix.
- ``django_orders.E015`` a setting that is a list of dotted paths (``EVENT_ENRICHERS``,
  ``ORDER_RULES``) is not a list.
- ``django_orders.E020`` ``READ_REPLICAS`` is not a list of ``DATABASES`` aliases other than
  ``default``.
- ``django_orders.E021`` ``READ_REPLICAS`` is set but ``ReplicaRouter`` is not in
  ``DATABASE_ROUTERS``.
- ``django_orders.E022`` ``ROW_LEVEL_SECURITY`` is on but the database is not PostgreSQL.
- ``django_orders.E023`` ``READ_YOUR_WRITES_COOKIE`` is not a legal cookie name.
- ``django_orders.W004`` ``ReplicaRouter`` is not the first of ``DATABASE_ROUTERS``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.checks import Error, Warning
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from django_orders.conf import (
    DEFAULTS,
    DURATIONS,
    IMPORT_LISTS,
    IMPORT_STRINGS,
    REMOVED_SETTINGS,
    SETTING_NAME,
    import_from_string,
    to_timedelta,
)
from django_orders.routers import ReplicaRouter

MIDDLEWARE_PATH = "django_orders.middleware.TenantMiddleware"
#: A cookie name: an RFC 6265 ``token`` (RFC 9110 ``tchar``s).
COOKIE_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: A reverse-DNS name (CloudEvents §3.1.1 ``type``: "SHOULD be prefixed with a reverse-DNS
#: name"), optionally ending with its dot.
EVENT_TYPE_PREFIX = re.compile(
    r"\A[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*\.?\Z"
)


def _user_settings() -> Mapping[str, Any] | None:
    value = getattr(settings, SETTING_NAME, {})
    return value if isinstance(value, Mapping) else None


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
    for key in sorted(IMPORT_LISTS):
        paths = value(key)
        if not isinstance(paths, list | tuple):
            errors.append(
                Error(
                    f"{SETTING_NAME}[{key!r}] must be a list of dotted paths (or callables).",
                    id="django_orders.E015",
                )
            )
            continue
        for path in paths:
            if isinstance(path, str):
                try:
                    import_from_string(path, key)
                except ImportError as exc:
                    errors.append(Error(str(exc), id="django_orders.E002"))
    prefix = value("EVENT_TYPE_PREFIX")
    if not isinstance(prefix, str) or (prefix and not EVENT_TYPE_PREFIX.match(prefix)):
        errors.append(
            Error(
                f"{SETTING_NAME}['EVENT_TYPE_PREFIX'] must be a reverse-DNS prefix such as "
                f"'com.example' (lower-case, dot-separated), not {prefix!r}.",
                id="django_orders.E014",
            )
        )

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
    port = value("OUTBOX_METRICS_PORT")
    if port is not None and (not _is_int(port) or not 0 <= port <= 65535):
        errors.append(
            Error(
                f"{SETTING_NAME}['OUTBOX_METRICS_PORT'] must be None or a TCP port number "
                "(0 picks a free one).",
                id="django_orders.E008",
            )
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


# The serializer settings and the package class each must extend (strictness, and the
# members the views and the domain layer rely on, come from it).
SERIALIZER_BASES = {
    "CREATE_SERIALIZER": "django_orders.serializers.OrderCreateSerializer",
    "CONFIRM_SERIALIZER": "django_orders.serializers.OrderConfirmSerializer",
    "LIST_FILTER_SERIALIZER": "django_orders.serializers.OrderListFilterSerializer",
}


def check_host_extensions(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """The swapped order model, the host's serializers and rules (docs/guide/extending.md).

    A setting that does not import is E002's to report, a swap setting naming no installed
    model Django's own (``models.E001`` / ``models.E002``).
    """
    from django_orders.models import ORDER_MODEL_SETTING, AbstractOrder, get_order_model

    errors: list[Any] = []
    try:
        model: Any = get_order_model()
    except ImproperlyConfigured:
        model = AbstractOrder
    if not issubclass(model, AbstractOrder):
        errors.append(
            Error(
                f"{ORDER_MODEL_SETTING} names {model._meta.label}, which does not subclass "
                "django_orders.models.AbstractOrder.",
                hint="Derive the host's order model from AbstractOrder.",
                id="django_orders.E010",
            )
        )
    user = _user_settings() or {}
    for key, base_path in SERIALIZER_BASES.items():
        if key not in user:
            continue
        try:
            serializer = user[key]
            if isinstance(serializer, str):
                serializer = import_from_string(serializer, key)
            base = import_from_string(base_path, key)
        except ImportError:
            continue
        if not (isinstance(serializer, type) and issubclass(serializer, base)):
            errors.append(
                Error(
                    f"{SETTING_NAME}[{key!r}] must be a subclass of {base_path}.",
                    id="django_orders.E011",
                )
            )
        elif key in WRITTEN_BY and issubclass(model, AbstractOrder):
            errors.extend(_check_written_fields(key, serializer, model))
    rules = user.get("ORDER_RULES", [])
    for rule in rules if isinstance(rules, list | tuple) else ():  # not a list: E015
        try:
            imported = import_from_string(rule, "ORDER_RULES") if isinstance(rule, str) else rule
        except ImportError:
            continue  # E002
        if not callable(imported):
            errors.append(
                Error(
                    f"{SETTING_NAME}['ORDER_RULES'] holds {rule!r}, which is not callable: "
                    "each rule is a callable taking an OrderChange.",
                    id="django_orders.E012",
                )
            )
    return errors


# What each action takes besides the host's fields (docs/guide/extending.md).
WRITTEN_BY = {
    "CREATE_SERIALIZER": frozenset({"total_cents", "currency", "metadata"}),
    "CONFIRM_SERIALIZER": frozenset({"total_cents"}),
}


def _check_written_fields(key: str, serializer: Any, model: Any) -> list[Any]:
    from django_orders.services import check_host_fields

    errors = []
    for name, field in serializer._declared_fields.items():
        source = field.source or name
        if field.read_only or source in WRITTEN_BY[key]:
            continue
        try:
            check_host_fields(model, {source: None})
        except TypeError as exc:
            errors.append(
                Error(
                    f"{SETTING_NAME}[{key!r}]: {serializer.__name__}.{name} writes to "
                    f"{source!r}: {exc}",
                    hint="A host serializer's fields are the package's members or the order "
                    "model's host fields (their source is the model field's name).",
                    id="django_orders.E013",
                )
            )
    return errors


def check_middleware(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    if MIDDLEWARE_PATH not in getattr(settings, "MIDDLEWARE", []):
        return []
    return [
        Warning(
            f"{MIDDLEWARE_PATH!r} is no longer needed: tenant-scoped views resolve the tenant "
            "themselves, after DRF authentication.",
            hint="Remove it from MIDDLEWARE; it does nothing.",
            id="django_orders.W003",
        )
    ]


ROUTER_PATH = "django_orders.routers.ReplicaRouter"


def check_read_replicas(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """``READ_REPLICAS`` names replicas Django knows, and the router that uses them is on.

    Reads settings only, never a connection: not a ``database`` check, which Django runs
    only when asked for a database, so it runs with every ``manage.py check``.
    """
    user = _user_settings() or {}
    replicas = user.get("READ_REPLICAS", DEFAULTS["READ_REPLICAS"])
    databases = getattr(settings, "DATABASES", {})
    if not isinstance(replicas, list | tuple) or any(
        not isinstance(alias, str) or alias not in databases or alias == "default"
        for alias in replicas
    ):
        return [
            Error(
                f"{SETTING_NAME}['READ_REPLICAS'] must be a list of DATABASES aliases of "
                f"replicas (not 'default'), not {replicas!r}.",
                id="django_orders.E020",
            )
        ]
    if not replicas:
        return []
    errors: list[Any] = []
    cookie = user.get("READ_YOUR_WRITES_COOKIE", DEFAULTS["READ_YOUR_WRITES_COOKIE"])
    if not isinstance(cookie, str) or not COOKIE_NAME.fullmatch(cookie):
        # Else every successful write would fail when its response sets the cookie.
        errors.append(
            Error(
                f"{SETTING_NAME}['READ_YOUR_WRITES_COOKIE'] must be a cookie name (RFC 6265: "
                f"letters, digits and !#$%&'*+-.^_`|~), not {cookie!r}.",
                id="django_orders.E023",
            )
        )
    routers = list(getattr(settings, "DATABASE_ROUTERS", []))
    positions = [i for i, router in enumerate(routers) if _is_replica_router(router)]
    if not positions:
        errors.append(
            Error(
                f"{SETTING_NAME}['READ_REPLICAS'] is set but no ReplicaRouter is in "
                "DATABASE_ROUTERS: every read would still go to the primary.",
                hint=f"Add {ROUTER_PATH!r} to DATABASE_ROUTERS (docs/guide/replicas.md).",
                id="django_orders.E021",
            )
        )
    elif positions[0] != 0:
        errors.append(
            Warning(
                "ReplicaRouter is not the first of DATABASE_ROUTERS: a router before it that "
                "answers db_for_read() for the package's models decides where the list and "
                "the GET read, not READ_REPLICAS (with ROW_LEVEL_SECURITY on, such a read "
                "runs without the tenant's setting and finds no rows).",
                hint="Put ReplicaRouter first (docs/guide/replicas.md), or silence this "
                "if your router answers None for the package's models.",
                id="django_orders.W004",
            )
        )
    return errors


def check_row_level_security(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """``ROW_LEVEL_SECURITY`` needs PostgreSQL (settings only, no connection)."""
    user = _user_settings() or {}
    if not user.get("ROW_LEVEL_SECURITY"):
        return []
    engine = getattr(settings, "DATABASES", {}).get("default", {}).get("ENGINE", "")
    if "postgresql" in engine or "postgis" in engine:
        return []
    return [
        Error(
            f"{SETTING_NAME}['ROW_LEVEL_SECURITY'] is on, but the database is {engine!r}: "
            "row-level security needs PostgreSQL.",
            hint="Turn it off, or see docs/guide/row-level-security.md.",
            id="django_orders.E022",
        )
    ]


def _is_replica_router(router: Any) -> bool:
    if isinstance(router, str):
        try:
            router = import_string(router)
        except ImportError:  # Django's own router loading says so
            return False
    cls = router if isinstance(router, type) else type(router)
    return issubclass(cls, ReplicaRouter)


def check_urls_not_exempt(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    from django_orders.tenancy import is_exempt_path

    paths = [path for path in _orders_api_paths() if is_exempt_path(path)]
    if not paths:
        return []
    return [
        Error(
            f"The orders API is mounted at {', '.join(map(repr, paths))}, under a "
            "TENANT_EXEMPT_PATHS prefix: its requests would have no tenant.",
            hint="Mount django_orders.urls elsewhere, or narrow TENANT_EXEMPT_PATHS.",
            id="django_orders.E009",
        )
    ]


def _orders_api_paths() -> list[str]:
    """The path of every route served by a view of the orders API (the package's or a
    subclass), wherever it is mounted: under any prefix and namespace, nested includes
    too. Paths read as DRF's schema generator writes them (``/api/orders/{order_id}``)."""
    from rest_framework.schemas.generators import EndpointEnumerator

    from django_orders.views import OrdersAPIView

    class Enumerator(EndpointEnumerator):
        # DRF's walk of the URL resolver, keeping the orders API's views only (DRF's own
        # filter would drop views hidden from the schema, which still serve requests).
        def should_include_endpoint(self, path: str, callback: Any) -> bool:
            view_class = getattr(callback, "cls", None)
            return isinstance(view_class, type) and issubclass(view_class, OrdersAPIView)

    try:
        endpoints = Enumerator().get_api_endpoints()
    except ImportError:
        return []  # a broken URLconf: Django's own URL checks report it
    # One entry per route, not per method, in the URLconf's order.
    return list(dict.fromkeys(path for path, _method, _callback in endpoints))


def check_tenant_access_configured(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    user = _user_settings() or {}
    if settings.DEBUG or user.get("TENANT_ACCESS_CHECK") or not _tenant_from_header(user):
        return []
    return [
        Warning(
            "No TENANT_ACCESS_CHECK is configured: any caller can act for any tenant by "
            "sending the tenant header.",
            hint=f"Set {SETTING_NAME}['TENANT_ACCESS_CHECK'] to a callable(request, tenant_id) "
            "-> bool, derive the tenant from the authenticated caller with a TENANT_RESOLVER "
            "of your own, or make sure a gateway in front of the API sets the header.",
            id="django_orders.W001",
        )
    ]


def _tenant_from_header(user: Mapping[str, Any]) -> bool:
    """Whether ``TENANT_RESOLVER`` is the package's header resolver (the default).

    A resolver of the host's own is taken to derive the tenant from the authenticated
    caller; one that does not cannot be told apart (docs/reference/checks.md).
    """
    from django_orders.tenancy import header_tenant_resolver

    resolver = user.get("TENANT_RESOLVER", DEFAULTS["TENANT_RESOLVER"])
    if isinstance(resolver, str):
        try:
            resolver = import_from_string(resolver, "TENANT_RESOLVER")
        except ImportError:
            return False  # E002 says so
    return resolver is header_tenant_resolver


def check_webhook_secrets(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    from django_orders.publishers.webhook import WebhookPublisher, is_standard_secret

    user = _user_settings() or {}
    publisher = user.get("OUTBOX_PUBLISHER", DEFAULTS["OUTBOX_PUBLISHER"])
    if isinstance(publisher, str):
        try:
            publisher = import_from_string(publisher, "OUTBOX_PUBLISHER")
        except ImportError:
            return []  # E002 says so
    if not (isinstance(publisher, type) and issubclass(publisher, WebhookPublisher)):
        return []
    options = user.get("OUTBOX_PUBLISHER_OPTIONS", {})
    secret = options.get("secret") if isinstance(options, Mapping) else None
    secrets = [secret] if isinstance(secret, str) else secret
    if not isinstance(secrets, list | tuple):
        return []  # missing or of the wrong type: the publisher refuses to start
    warnings = []
    for position, value in enumerate(secrets, start=1):
        if not isinstance(value, str) or not value or is_standard_secret(value):
            continue
        which = "'secret'" if isinstance(secret, str) else f"'secret' #{position}"
        # The message never quotes the secret: check output ends up in logs.
        warnings.append(
            Warning(
                f"{SETTING_NAME}['OUTBOX_PUBLISHER_OPTIONS'] {which} is not a Standard "
                "Webhooks secret (whsec_ followed by base64): verifiers such as the official "
                "standardwebhooks libraries reject it as a string.",
                hint='Generate one with `"whsec_" + base64.b64encode(os.urandom(32)).decode()` '
                "and give receivers that string as it is. A plain-text secret keeps working "
                "only for receivers that pass it to their verifier as bytes (secret.encode()); "
                "see docs/guide/publishers.md.",
                id="django_orders.W002",
            )
        )
    return warnings


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
