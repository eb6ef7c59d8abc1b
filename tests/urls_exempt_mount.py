"""A misconfiguration: the package mounted under a tenant-exempt prefix."""

from django.urls import include, path

urlpatterns = [path("docs/api/", include("django_orders.urls"))]
