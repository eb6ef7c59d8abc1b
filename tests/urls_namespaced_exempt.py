"""A misconfiguration: the host's ``api`` namespace, with the package, under an exempt
prefix, and a subclass mounted with ``orders_urls()`` under another."""

from django.urls import include, path

from django_orders.urls import orders_urls
from tests.hostapp.orders_views import LockedCollection

urlpatterns = [
    path("docs/", include(("tests.urls_host_api", "api"))),
    path("admin/locked/", include(orders_urls(collection=LockedCollection), namespace="locked")),
]
