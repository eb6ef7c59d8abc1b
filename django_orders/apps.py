from importlib.util import find_spec

from django.apps import AppConfig
from django.core.checks import Tags, register


class DjangoOrdersConfig(AppConfig):
    name = "django_orders"
    verbose_name = "Orders"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django_orders import checks

        # The system checks, by tag (their ids are listed in docs/reference/checks.md).
        register(checks.check_settings, Tags.compatibility)
        register(checks.check_host_extensions, Tags.models)
        register(checks.check_middleware, Tags.compatibility)
        register(checks.check_read_replicas, Tags.compatibility)
        register(checks.check_row_level_security, Tags.compatibility)
        register(checks.check_urls_not_exempt, Tags.urls)
        register(checks.check_tenant_access_configured, Tags.security, deploy=True)
        register(checks.check_webhook_secrets, Tags.security)

        # The OpenAPI description, only with the `openapi` extra (drf-spectacular).
        if find_spec("drf_spectacular") is not None:
            from django_orders import openapi  # noqa: F401
