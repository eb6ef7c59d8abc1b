from django.apps import AppConfig


class DjangoOrdersConfig(AppConfig):
    name = "django_orders"
    verbose_name = "Orders"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the system checks (their ids are listed in docs/reference/checks.md).
        from django_orders import checks  # noqa: F401
