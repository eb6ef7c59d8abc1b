from importlib.util import find_spec

from django.apps import AppConfig


class DjangoOrdersConfig(AppConfig):
    name = "django_orders"
    verbose_name = "Orders"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the system checks (their ids are listed in docs/reference/checks.md).
        from django_orders import checks  # noqa: F401

        # The OpenAPI description, only with the `openapi` extra (drf-spectacular).
        if find_spec("drf_spectacular") is not None:
            from django_orders import openapi  # noqa: F401
