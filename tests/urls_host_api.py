"""A host's own API URLconf that includes the package's URLs (see tests/urls_namespaced*)."""

from django.urls import include, path

urlpatterns = [path("", include("django_orders.urls"))]
