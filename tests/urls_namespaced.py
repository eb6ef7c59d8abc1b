"""The package inside the host's ``api`` namespace: ``api:django_orders:order-list``."""

from django.urls import include, path

urlpatterns = [path("api/", include(("tests.urls_host_api", "api")))]
